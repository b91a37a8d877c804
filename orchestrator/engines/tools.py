"""Tool calls, decoded the same way on every engine that constrains output to a JSON
schema.

The chat template shows the model the tools (engines/chat.py). Where the client requires a
call (`tool_choice` "required" or a named function), the answer is constrained to the
schema below: one object naming a tool and its arguments, so it always parses. With "auto"
the model answers freely and an answer that is such an object (Llama 3.1's JSON tool-call
format, `{"name": ..., "parameters": ...}`, or one inside Hermes-style `<tool_call>` tags)
is read as a call; anything else is the assistant's text.
"""

from __future__ import annotations

import json
import re
import uuid

_TAGGED = re.compile(r"^\s*<tool_call>\s*(.*?)\s*</tool_call>\s*$", re.S)


def _call_schema(fn: dict) -> dict:
    return {"type": "object",
            "properties": {"name": {"const": fn["name"]},
                           "arguments": fn.get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"]}


def forced_schema(tools: list[dict], choice) -> dict | None:
    """The schema a required call's answer must satisfy, or None where the model may
    answer freely ("auto"). `choice` is "required", "auto" or {"type": "function",
    "function": {"name": ...}}."""
    fns = [t["function"] for t in tools]
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return _call_schema(next(f for f in fns if f["name"] == name))
    if choice == "required":
        calls = [_call_schema(f) for f in fns]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}
    return None


def parse_call(text: str, tools: list[dict]) -> dict | None:
    """The tool call an answer makes, in OpenAI's shape, or None where it is text."""
    tagged = _TAGGED.match(text)
    body = tagged.group(1) if tagged else text.strip()
    if not body.startswith("{"):
        return None
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    names = {t["function"]["name"] for t in tools}
    args = obj.get("arguments", obj.get("parameters"))
    if obj.get("name") not in names or not isinstance(args, dict):
        return None
    return {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": obj["name"], "arguments": json.dumps(args)}}

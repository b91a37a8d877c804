"""Each request feature (engines/features.py) sent to a real engine, with what it did: the
same checks for every engine we run here (llama.cpp, llama-server, vLLM), so the table in
docs/serving.md is what these tests saw. Ray-free; the caller starts and stops the engine."""

from __future__ import annotations

import json

from orchestrator.engines.base import GenerateRequest
from orchestrator.engines.tools import forced_schema, parse_call

PROMPT = "The capital of France is"
REPEAT = "1, 1, 1, 1, 1, 1, 1, 1,"
# Bounded in every property: a base model held to an unbounded integer may write zeros to
# max_tokens (vLLM's grammar, like llama.cpp's, allows any number of digits).
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                           "country": {"enum": ["France", "Spain", "Italy"]},
                                           "capital": {"type": "boolean"}},
          "required": ["city", "country", "capital"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"], "additionalProperties": False}}}


async def _run(engine, rid, **kw):
    chunks = [c async for c in engine.generate(GenerateRequest(rid, temperature=0, **kw))]
    return "".join(c.text for c in chunks), chunks


async def exercise(engine, rendered_prefix: str = "") -> dict:
    """What each feature did on `engine`: {feature: evidence}; assertions are the
    caller's. `rendered_prefix` is prepended to prompts (none for a base model)."""
    seen = {}
    base, chunks = await _run(engine, "base", prompt=PROMPT, max_tokens=8)
    # logit_bias: ban the token greedy decoding chose first; the answer must change there
    ids = engine.tokenize(PROMPT + base)
    first = ids[len(engine.tokenize(PROMPT))]
    banned, _ = await _run(engine, "bias", prompt=PROMPT, max_tokens=8,
                           logit_bias=((first, -100.0),))
    seen["logit_bias"] = {"base": base, "banned": banned, "first_id": first}
    plain, _ = await _run(engine, "rep", prompt=REPEAT, max_tokens=12)
    penalised, _ = await _run(engine, "pen", prompt=REPEAT, max_tokens=12,
                              presence_penalty=2.0, frequency_penalty=2.0)
    seen["penalties"] = {"plain": plain, "penalised": penalised}
    text, _ = await _run(engine, "json", prompt="A city as JSON:", max_tokens=80,
                         json_schema=json.dumps(SCHEMA))
    seen["json_schema"] = text
    # tools: a required call, held to its schema (engines/tools.py), reads back as a call
    call_schema = json.dumps(forced_schema([WEATHER], "required"))
    text, _ = await _run(engine, "tool", prompt="Call a function for the weather in Oslo:",
                         max_tokens=60, json_schema=call_schema)
    seen["tools"] = {"text": text, "call": parse_call(text, [WEATHER])}
    _, chunks = await _run(engine, "lp", prompt=PROMPT, max_tokens=6, logprobs=2)
    probs = [p for c in chunks for p in c.logprobs]
    seen["logprobs"] = {"items": probs, "tokens": chunks[-1].completion_tokens}
    return seen


def check(seen: dict, honours: set[str]) -> None:
    """The assertions, feature by feature, for the features `honours` names."""
    import jsonschema

    if "logit_bias" in honours:
        b = seen["logit_bias"]
        assert b["banned"] != b["base"], b
    if "penalties" in honours:
        p = seen["penalties"]
        assert p["penalised"] != p["plain"], p
    if "json_schema" in honours:
        jsonschema.validate(json.loads(seen["json_schema"]), SCHEMA)
    if "tools" in honours:
        call = seen["tools"]["call"]
        assert call is not None and call["function"]["name"] == "get_weather", seen["tools"]
    if "logprobs" in honours:
        lp = seen["logprobs"]
        assert len(lp["items"]) == lp["tokens"] > 0, lp
        for t in lp["items"]:
            assert t.logprob <= 0 and 1 <= len(t.top) <= 2, t
            # greedy: the chosen token is the most likely one
            assert abs(t.top[0][1] - t.logprob) < 1e-3, t

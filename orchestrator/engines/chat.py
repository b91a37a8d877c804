"""Chat templates: the model's own (GGUF metadata) when it has one, else the catalog's."""

from __future__ import annotations

import json
import re

import jinja2.sandbox


def render(template: str, messages: list[dict], bos: str = "", eos: str = "",
           tools: list[dict] | None = None) -> str:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       keep_trailing_newline=True)
    env.globals["raise_exception"] = _raise
    env.filters["tojson"] = _tojson  # as Hugging Face renders templates: no HTML escaping
    extra = {"tools": tools} if tools else {}
    return env.from_string(template).render(messages=messages, bos_token=bos,
                                            eos_token=eos, add_generation_prompt=True, **extra)


def takes_tools(template: str | None) -> bool:
    """Whether a chat template renders a `tools` list (published templates that support
    tool calling read the variable `tools`; one that never mentions it would drop them)."""
    return bool(template) and re.search(r"\btools\b", template) is not None


def refuse_tools(template: str | None, tools: list[dict] | None) -> None:
    from orchestrator.engines.base import RequestError

    if tools and not takes_tools(template):
        raise RequestError("this model's chat template takes no tools, so the model would "
                           "never see them; leave tools out", "tools", "tools_unsupported")


def render_or_refuse(template: str | None, messages: list[dict], bos: str = "",
                     tools: list[dict] | None = None) -> str:
    """`render`, with the request's fault as a RequestError: no template to render with,
    a template that takes no tools where tools were sent, or one that refuses these
    messages."""
    from orchestrator.engines.base import RequestError, template_error

    if not template:
        raise RequestError("this model has no chat template; use /v1/completions",
                           "messages", "chat_unsupported")
    refuse_tools(template, tools)
    try:
        return render(template, messages, bos=bos, tools=tools)
    except Exception as e:
        raise template_error(e) from None


def _tojson(value, indent=None, **_):
    # Hugging Face templates call tojson with arguments jinja2's own filter lacks
    return json.dumps(value, indent=indent, ensure_ascii=False)


def _raise(message: str):
    raise ValueError(message)


def encode_once(tokenizer, text: str, rendered_chat: bool) -> list[int]:
    """Token ids with exactly one BOS. A chat template that writes the BOS itself (most
    published ones begin with ``{{ bos_token }}``) must not get a second one from the
    encoder, so its output is encoded without special tokens, as vLLM's own server does;
    a template that does not write it, and a plain prompt, get the tokenizer's."""
    bos = getattr(tokenizer, "bos_token", None)
    wrote_bos = rendered_chat and bool(bos) and text.startswith(bos)
    return tokenizer.encode(text, add_special_tokens=not wrote_bos)

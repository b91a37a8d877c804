"""Chat templates: the model's own (GGUF metadata) when it has one, else the catalog's."""

from __future__ import annotations

import jinja2.sandbox


def render(template: str, messages: list[dict], bos: str = "", eos: str = "") -> str:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       keep_trailing_newline=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template).render(messages=messages, bos_token=bos,
                                            eos_token=eos, add_generation_prompt=True)


def render_or_refuse(template: str | None, messages: list[dict], bos: str = "") -> str:
    """`render`, with the request's fault as a RequestError: no template to render with,
    or a template that refuses these messages."""
    from orchestrator.engines.base import RequestError, template_error

    if not template:
        raise RequestError("this model has no chat template; use /v1/completions",
                           "messages", "chat_unsupported")
    try:
        return render(template, messages, bos=bos)
    except Exception as e:
        raise template_error(e) from None


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

"""Chat templates: the model's own (GGUF metadata) when it has one, else the catalog's."""

from __future__ import annotations

import jinja2.sandbox


def render(template: str, messages: list[dict], bos: str = "", eos: str = "") -> str:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       keep_trailing_newline=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template).render(messages=messages, bos_token=bos,
                                            eos_token=eos, add_generation_prompt=True)


def _raise(message: str):
    raise ValueError(message)

"""The OpenAI request fields that change an answer and that not every engine can honour.

Each backend names the features its engine honours (`Backend.features`); the ingress routes
a request only to pools that honour every feature it uses, and answers 400 naming the field
and the pools that can where none can (serve/fields.py). Fields the ingress itself honours
for every pool (`n`, a list of prompts, `echo`) are not features: it fans a request out or
prepends the prompt.
"""

from __future__ import annotations

PENALTIES = "penalties"
LOGIT_BIAS = "logit_bias"
LOGPROBS = "logprobs"
JSON_SCHEMA = "json_schema"
TOOLS = "tools"

# feature -> the request fields that use it, as the 400 and docs/serving.md name them
FIELDS: dict[str, str] = {
    PENALTIES: "presence_penalty, frequency_penalty",
    LOGIT_BIAS: "logit_bias",
    LOGPROBS: "logprobs, top_logprobs",
    JSON_SCHEMA: "response_format (json_object, json_schema)",
    TOOLS: "tools, tool_choice",
}

# Tool calls are decoded through the same JSON-schema constraint (engines/tools.py), so a
# pool that constrains output to a schema can call tools where the chat template takes them.
IMPLIED: dict[str, frozenset[str]] = {JSON_SCHEMA: frozenset({TOOLS})}


def with_implied(features: frozenset[str]) -> frozenset[str]:
    out = set(features)
    for f in features:
        out |= IMPLIED.get(f, frozenset())
    return frozenset(out)

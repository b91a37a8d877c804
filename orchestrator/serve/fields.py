"""Which pools may take a request, by the fields it uses (engines/features.py).

A request goes only to pools whose engine honours every field it sends. Where none of the
pools it may use (its precision pin and floor allowed) honours one of them, it is a 400 in
OpenAI's shape naming the field and the pools that do honour it, if any: the client can
drop the field, or pin a precision those pools serve. Ray-free.
"""

from __future__ import annotations

from orchestrator.engines.features import (JSON_SCHEMA, LOGIT_BIAS, LOGPROBS, PENALTIES,
                                           TOOLS)
from orchestrator.models.precision import PRECISIONS
from orchestrator.serve.contract import PoolFacts
from orchestrator.serve.openai_api import ApiError


def needed(body) -> dict[str, str]:
    """feature -> the request field that asks for it."""
    out = {}
    if body.presence_penalty or body.frequency_penalty:
        out[PENALTIES] = "presence_penalty" if body.presence_penalty else "frequency_penalty"
    if body.logit_bias:
        out[LOGIT_BIAS] = "logit_bias"
    if body.logprob_count() is not None:
        out[LOGPROBS] = "top_logprobs" if getattr(body, "top_logprobs", None) else "logprobs"
    if body.schema_text() is not None:
        out[JSON_SCHEMA] = "response_format"
    if getattr(body, "calls_tools", lambda: False)():
        out[TOOLS] = "tools"
    return out


def eligible(pools: dict[str, PoolFacts], wants: dict[str, str], pin: str | None,
             floor: int | None) -> frozenset[str] | None:
    """The pools that honour every field in `wants`; None where it asks for nothing. Raises
    the 400 where none of the pools the request may use honours them all."""
    if not wants:
        return None
    ok = frozenset(dep for dep, f in pools.items() if set(wants) <= f.features)
    usable = {dep for dep, f in pools.items()
              if (pin is None or f.precision == pin)
              and (floor is None or PRECISIONS[f.precision].rank >= floor)}
    if ok & usable or not usable:  # no usable pool at all: routing answers for the pin
        return ok & usable if usable else ok
    missing = [f for f in wants if not any(f in pools[dep].features for dep in usable)]
    feature = (missing or [f for f in wants
                           if not all(f in pools[dep].features for dep in usable)])[0]
    field = wants[feature]
    mine = ", ".join(f"{dep} ({pools[dep].engine})" for dep in sorted(usable))
    can = [f"{dep} ({pools[dep].precision} on {pools[dep].engine})"
           for dep in sorted(pools) if feature in pools[dep].features]
    where = (f"pools that do: {', '.join(can)}; pin one with the model name "
             f"'<model>:<precision>'" if can else "no pool of this deployment does")
    raise ApiError(400, f"{field} is not honoured by the pools this request may use "
                        f"({mine or 'none'}); {where}. Leave {field} out, or see "
                        "docs/serving.md for the fields each backend honours",
                   "invalid_request_error", field, "unsupported_field")

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
from orchestrator.router.context import RouteRequest
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
    if body.calls_tools():
        out[TOOLS] = "tools"
    return out


def eligible(pools: dict[str, PoolFacts], wants: dict[str, str], pin: str | None,
             floor: int | None, model: str = "MODEL") -> frozenset[str] | None:
    """The pools that honour every field in `wants`; None where it asks for nothing. Raises
    the 400 where none of the pools the request may use honours them all."""
    if not wants:
        return None
    ok = frozenset(dep for dep, f in pools.items() if set(wants) <= f.features)
    allowed = RouteRequest(1, 1, pinned_precision=pin, min_rank=floor)  # pin and floor only
    usable = {dep for dep, f in pools.items()
              if allowed.accepts(f.precision, PRECISIONS[f.precision].rank)}
    if ok & usable or not usable:  # no usable pool at all: routing answers for the pin
        return ok & usable if usable else ok
    missing = [f for f in wants if not any(f in pools[dep].features for dep in usable)]
    if not missing:  # each is honoured somewhere, but no usable pool honours them all
        each = [f"{dep} honours " + (", ".join(w for f, w in wants.items()
                                               if f in pools[dep].features) or "none")
                for dep in sorted(usable)]
        raise _refusal(", ".join(wants.values()), next(iter(wants.values())),
                       f"no pool honours {' and '.join(wants.values())} together "
                       f"({'; '.join(each)}); send them in separate requests")
    feature = missing[0]
    field = wants[feature]
    mine = ", ".join(f"{dep} ({pools[dep].engine})" for dep in sorted(usable))
    can = [dep for dep in sorted(pools) if feature in pools[dep].features]
    if not can:
        return _raise(field, f"{field} is not honoured by the pools this request may use "
                             f"({mine}); no pool of this deployment does")
    named = ", ".join(f"{dep} ({pools[dep].precision} on {pools[dep].engine})" for dep in can)
    below = floor is not None and all(PRECISIONS[pools[d].precision].rank < floor for d in can)
    how = ("they are below the x-min-precision floor this request set" if below else
           f"pin one with the model name '{model}:{pools[can[0]].precision}'")
    return _raise(field, f"{field} is not honoured by the pools this request may use "
                         f"({mine}); pools that do: {named}; {how}")


def _raise(field: str, said: str):
    raise _refusal(field, field, said)


def _refusal(fields_: str, param: str, said: str) -> ApiError:
    return ApiError(400, f"{said}. Leave {fields_} out, or see docs/serving.md for the "
                         "fields each backend honours", "invalid_request_error", param,
                    "unsupported_field")

"""Any OpenAI-compatible server as a pool: Ollama (`ollama serve`, the model created from our
GGUF artifact with a Modelfile), ExLlamaV2 through TabbyAPI, llama.cpp's llama-server,
llama-cpp-python's server, or vLLM's and TensorRT-LLM's own servers. The node type's
`upstream` says how to reach it (a command the replica starts, or a URL where it already
runs), the name it knows the model by and how many sequences it decodes at once; its
`precisions` names the one precision it serves. The planner checks that precision's memory
on the node type like any other; the router and autoscaler see the replica's own count of
what it has sent and what is waiting (engines/upstream.py).

The artifact is a record of the upstream, and the node type's GGUF where the command names
{model} (quantized as for llama.cpp), so an upstream that loads a file loads ours.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator import __version__
from orchestrator.backends.base import Backend, write_json
from orchestrator.backends.llamacpp import MODEL_FILE, LlamaCpp
from orchestrator.engines.features import JSON_SCHEMA, LOGIT_BIAS, LOGPROBS, PENALTIES
from orchestrator.engines.supervised import SupervisedUpstream
from orchestrator.engines.upstream import UpstreamEngine
from orchestrator.models.catalog import get_model
from orchestrator.models.precision import PRECISIONS

RECORD = "upstream.json"


def _needs_model(up: dict) -> bool:
    return any("{model}" in a for a in up.get("command") or ())


class Upstream(Backend):
    id, display, extra = "upstream", "OpenAI-compatible upstream", "llamacpp"
    dists = ("orchestrator",)
    gpu_support = {p: 0 for p in PRECISIONS}  # whatever the upstream runs
    cpu_support = frozenset(PRECISIONS)
    # what the planner charges it for: llama.cpp-like runtime buffers (most upstreams are)
    parallelism, overhead_gib_per_gpu, overhead_gib_cpu = "layer", 0.5, 0.25
    max_batch, chunked_prefill = 256, False  # the node type's upstream.max_batch bounds it
    calibration_from = "llamacpp"
    fronts_upstream = True
    checks_checkpoints = False  # the upstream has its own weights
    notes = "fronts an OpenAI-compatible server; speeds are llama.cpp's estimates"
    # what OpenAI's completions API itself defines, which any compatible server takes
    features = frozenset({PENALTIES, LOGIT_BIAS, LOGPROBS})
    feature_notes = {JSON_SCHEMA: "OpenAI's completions API has no schema field; servers "
                                  "spell it each their own way"}
    engine_class = "orchestrator.backends.upstream:UpstreamPoolEngine"

    def offers(self, precision_id, *, cpu, opted_in=False):
        return opted_in and precision_id in PRECISIONS

    def check_node(self, node):
        if node.upstream is None:
            return (f"backends lists {self.id} but the node type has no upstream: say how to "
                    "reach the server (upstream.command or upstream.url)")
        if not node.precisions or len(node.precisions) != 1:
            return (f"an upstream serves one precision: set precisions to the one it "
                    f"serves (got {node.precisions})")
        if _needs_model(node.upstream.model_dump()) and not PRECISIONS[node.precisions[0]].is_gguf:
            return (f"upstream.command names {{model}}, the node type's GGUF artifact, but "
                    f"{node.precisions[0]} is not a GGUF type")
        return None

    def replica_batch(self, choice) -> int:
        return choice.perf.batch

    def version(self) -> str:
        return __version__  # nothing of ours is compiled: the record's format is the key

    def build_params(self, n, plan, node, sources):
        up = node.upstream.model_dump()
        if not _needs_model(up):
            return "none", {"upstream": up}
        kind, params = LlamaCpp().build_params(n, plan, node, sources)
        return kind, {**params, "upstream": up}

    def describe(self, spec):
        up = spec.params["upstream"]
        how = f"start {Path(up['command'][0]).name}" if up.get("command") else f"at {up['url']}"
        gguf = f"quantize {spec.source_kind} -> {spec.params['gguf_type']}; " \
            if "gguf_type" in spec.params else ""
        return f"{gguf}upstream {how} serving {up['served_model']!r}"

    def build(self, spec, out, cache=None):
        notes = []
        if "gguf_type" in spec.params:
            notes = LlamaCpp().build(spec, out, cache)
        write_json(out / RECORD, spec.params["upstream"])
        return [*notes, "the upstream loads its model when the replica starts it"]

    def serving_context(self, n):
        return n.choice.memory.max_context

    def engine_args(self, n, model, artifact):
        up = json.loads((Path(artifact) / RECORD).read_text())
        gguf = Path(artifact) / MODEL_FILE
        threads = int(n.choice.replica_resources.get("CPU", 0)) or 1
        return {"command": [a.replace("{model}", str(gguf)).replace("{threads}", str(threads))
                            for a in up["command"]] if up.get("command") else None,
                "url": up.get("url"), "served_model": up["served_model"],
                "max_batch": n.choice.perf.batch,
                "context_tokens": up.get("context") or self.serving_context(n),
                "tokenizer_gguf": str(gguf) if gguf.exists() else None,
                "chat_template": get_model(model).chat_template,
                "health_path": up["health_path"], "api_key_env": up.get("api_key_env"),
                "start_timeout_s": up["start_timeout_s"]}


class UpstreamPoolEngine(SupervisedUpstream):
    """A supervised upstream where the record has a command; else the server at its URL,
    which the replica only talks to (its life is the node's business)."""

    name = "upstream"

    def __init__(self, *, command: list[str] | None, url: str | None, served_model: str,
                 max_batch: int, context_tokens: int, tokenizer_gguf: str | None,
                 chat_template: str | None, health_path: str, api_key_env: str | None,
                 start_timeout_s: float):
        key = os.environ.get(api_key_env) if api_key_env else None
        url = url or "http://127.0.0.1:{port}"

        def argv(port: int) -> list[str]:
            return [a.replace("{port}", str(port)) for a in command]

        super().__init__(argv, health_path=health_path, served_model=served_model,
                         max_batch=max_batch, context_tokens=context_tokens,
                         tokenizer_gguf=tokenizer_gguf, chat_template=chat_template,
                         api_key=key, start_timeout_s=start_timeout_s)
        self.url_template, self.external = url, command is None

    async def start(self) -> None:
        if self.external:
            self.base_url = self.url_template.rstrip("/")
            await UpstreamEngine.start(self)
            return
        await super().start()

    def base_for(self, port: int) -> str:
        return self.url_template.replace("{port}", str(port)).rstrip("/")

    def alive(self) -> str | None:
        return None if self.external else super().alive()

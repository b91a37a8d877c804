"""llama.cpp's own server: each replica supervises one `llama-server` process that batches
continuously across parallel slots (llama-cpp-python decodes one sequence at a time) and
keeps a prompt cache per slot.

The artifact is the node type's GGUF (quantized as for llama.cpp, backends/llamacpp.py)
and a `llama-server` binary compiled on a node of the type with its flags
(backends/llama_server_bin.py). The replica starts the binary bound to 127.0.0.1 on a free
port, with the plan's slots, context per slot, threads and GPU layers; waits for its
/health; streams requests through its OpenAI API (engines/upstream.py); reads running and
waiting sequences from its /slots and /metrics; and kills its process group when the replica
goes (and the kernel kills it if the replica dies first).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import time
from pathlib import Path

from orchestrator.backends import llama_server_bin as binsrc
from orchestrator.backends.llamacpp import MAX_CONTEXT, MODEL_FILE, LlamaCpp, llama_seed
from orchestrator.engines.base import EngineStats
from orchestrator.engines.features import LOGPROBS
from orchestrator.engines.supervised import SupervisedUpstream
from orchestrator.hardware.catalog import get_gpu
from orchestrator.models.catalog import get_model

log = logging.getLogger("ray.serve")
SERVER_FILE = "bin/llama-server"
# Prompt tokens one iteration processes, over all slots, beside one decode step of every
# running slot (chunked prefill; -b). Not llama-server's 2048: an iteration cannot be
# interrupted, so a cancelled request's slot frees, and running slots step, only between
# iterations, which at 2048 tokens last ~15 s on one core of the demo's machine.
PROMPT_CHUNK_TOKENS = 512
POLL_S = 0.5  # how often /slots and /metrics are read


class LlamaServer(LlamaCpp):
    id, display = "llamaserver", "llama.cpp server"
    # parallel slots one replica decodes together; the plan sizes them to the KV room
    max_batch, chunked_prefill = 16, True
    notes = ("llama.cpp's llama-server: continuous batching over parallel slots, chunked "
             f"prompt processing ({PROMPT_CHUNK_TOKENS}-token chunks), a prompt cache per slot")
    engine_class = "orchestrator.backends.llamaserver:LlamaServerEngine"
    # the server reports each token's logprobs (n_probs) and turns a schema into a grammar
    features = LlamaCpp.features | {LOGPROBS}
    feature_notes = {}

    def offers(self, precision_id, *, cpu, opted_in=False):
        # chosen where a node type lists it in `backends`: its binary is compiled per node
        # type (minutes), which a plan should not start without being asked
        return opted_in and super().offers(precision_id, cpu=cpu, opted_in=True)

    def concurrency(self, kv_tokens: int, typical_sequence: int, min_context: int) -> int:
        # llama-server splits its context evenly over its slots: each must hold min_context
        return max(1, min(self.max_batch, kv_tokens // max(typical_sequence, min_context)))

    def replica_batch(self, choice) -> int:
        return choice.perf.batch

    def build_params(self, n, plan, node, sources):
        kind, params = super().build_params(n, plan, node, sources)
        target = ({"isa": node.cpu.isa} if node.is_cpu
                  else {"cuda_arch": str(get_gpu(node.gpu).sm)})
        return kind, {**params, "server": target}

    def describe(self, spec):
        return f"{super().describe(spec)}; {binsrc.describe(spec.params['server'])}"

    def build(self, spec, out, cache=None):
        notes = super().build(spec, out, cache)
        binary, note = binsrc.server_binary(spec.params["server"],
                                            Path(cache) if cache else out.parent / ".cache")
        (out / SERVER_FILE).parent.mkdir(parents=True)
        shutil.copy2(binary, out / SERVER_FILE)
        return [*notes, note]

    def serving_context(self, n):
        c = n.choice
        return min(c.memory.max_context, c.memory.kv_tokens // c.perf.batch, MAX_CONTEXT)

    def engine_args(self, n, model, artifact):
        c = n.choice
        threads = int(c.replica_resources.get("CPU", 0)) or None
        return {"binary": str(Path(artifact) / SERVER_FILE),
                "model_path": str(Path(artifact) / MODEL_FILE), "slots": c.perf.batch,
                "ctx_per_slot": self.serving_context(n), "threads": threads,
                "gpu_layers": 999 if "GPU" in c.replica_resources else 0,
                "cache_type": c.kv_cache_dtype if c.kv_cache_dtype != "fp16" else None,
                "chat_template": get_model(model).chat_template}


def server_command(binary: str, model_path: str, port: int, *, slots: int,
                   ctx_per_slot: int, threads: int | None, gpu_layers: int,
                   cache_type: str | None = None) -> list[str]:
    cmd = [binary, "-m", model_path, "--host", "127.0.0.1", "--port", str(port),
           "-c", str(slots * ctx_per_slot), "-np", str(slots), "-ngl", str(gpu_layers),
           "--metrics", "--slots", "--no-webui", "-a", "model",
           # a prompt over its slot's context is refused, not silently cut at the front
           "--no-context-shift",
           # flash attention: +5 % aggregate at 8 slots on the demo (benchmarks/README.md)
           "-fa", "-b", str(PROMPT_CHUNK_TOKENS), "-ub", str(PROMPT_CHUNK_TOKENS),
           # HTTP threads: every slot's stream, plus the health and load probes
           "--threads-http", str(slots + 4)]
    if threads:
        cmd += ["-t", str(threads), "-tb", str(threads)]
    if cache_type:  # the plan's quantized KV cache (a quantized V needs -fa, set above)
        cmd += ["-ctk", cache_type, "-ctv", cache_type]
    return cmd


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for m in re.finditer(r"^llamacpp:(\w+)\s+([-0-9.e+]+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


class LlamaServerEngine(SupervisedUpstream):
    name = "llamaserver"

    def __init__(self, binary: str, model_path: str, *, slots: int = 1,
                 ctx_per_slot: int = 2048, threads: int | None = None, gpu_layers: int = 0,
                 chat_template: str | None = None, cache_type: str | None = None):
        def command(port: int) -> list[str]:
            return server_command(binary, model_path, port, slots=slots,
                                  ctx_per_slot=ctx_per_slot, threads=threads,
                                  gpu_layers=gpu_layers, cache_type=cache_type)

        super().__init__(command, served_model="model", max_batch=slots,
                         context_tokens=ctx_per_slot, tokenizer_gguf=model_path,
                         chat_template=chat_template, health_path="/health",
                         extra_body={"cache_prompt": True})
        self.server_view: tuple[float, int, int] | None = None  # (at, decoding, prefilling)
        self.metrics: dict[str, float] = {}
        self.poller: asyncio.Task | None = None

    def body(self, req, prompt):
        body = super().body(req, prompt)
        if "seed" in body:  # llama.cpp's sampler seed is 32-bit; the API's may be 64-bit
            body["seed"] = llama_seed(body["seed"])
        if req.json_schema is not None:  # the server turns it into a grammar itself
            body["json_schema"] = json.loads(req.json_schema)
        return body

    async def start(self) -> None:
        await super().start()
        self.poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        """The server's own view of its load, for stats(): which slots decode, which are
        still processing their prompt, and what /metrics counts."""
        while True:
            try:
                async with self.session.get(f"{self.base_url}/slots") as r:
                    slots = await r.json() if r.status == 200 else None
                async with self.session.get(f"{self.base_url}/metrics") as r:
                    if r.status == 200:
                        self.metrics = parse_metrics(await r.text())
                if isinstance(slots, list):
                    busy = [s for s in slots if s.get("is_processing")]
                    decoding = sum(1 for s in busy
                                   if (s.get("next_token") or {}).get("n_decoded", 0) > 0)
                    self.server_view = (time.monotonic(), decoding, len(busy) - decoding)
            except asyncio.CancelledError:
                raise
            except Exception:  # a probe that failed: stats fall back to the replica's count
                self.server_view = None
            await asyncio.sleep(POLL_S)

    # a cancelled request's slot frees at the end of the server's iteration (seconds on a
    # CPU); until its /slots says so, the slot stays taken here and counts as running
    orphan_wait_s = 60.0

    def let_go(self, since: float) -> bool:
        view = self.server_view
        if view is None or view[0] <= since:
            return False
        streaming = sum(1 for v in self.live.values() if v.started)
        return view[1] + view[2] <= streaming

    def stats(self) -> EngineStats:
        st = super().stats()
        view = self.server_view
        if view is None or time.monotonic() - view[0] > 4 * POLL_S:
            return st
        _, decoding, prefilling = view
        queued = sum(1 for v in self.live.values() if not v.started)
        # the server's slots include the abandoned ones it has not let go yet
        return st.model_copy(update={"running": max(decoding, st.running),
                                     "waiting": queued + prefilling})

    async def stop(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
        await super().stop()

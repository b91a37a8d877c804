"""llama.cpp through llama-cpp-python: GGUF artifacts quantized on each node type, served on
CPU here and with CUDA offload on GPUs.

Every llama call of a replica runs on one dedicated thread: calling the model from several
threads drops decode from ~44 to ~24 tok/s on 2 cores (its OpenMP thread teams; measured in
docs/operations.md). Requests queue FIFO and run one at a time; tokens reach asyncio
through a queue. ``logits_all`` stays off: it makes a 512-token prefill 2.4x slower.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import shutil
import threading
from pathlib import Path
from typing import AsyncIterator

from orchestrator.backends.base import Backend, BuildSpec, Calibration
from orchestrator.engines import chat
from orchestrator.engines.base import (Chunk, Engine, EngineFault, EngineStats,
                                       GenerateRequest, Progress, RequestError, TokenRate)
from orchestrator.engines.features import JSON_SCHEMA, LOGIT_BIAS, LOGPROBS, PENALTIES
from orchestrator.errors import BuildFailed, MissingExtraError, UserError
from orchestrator.models.catalog import get_model
from orchestrator.models.precision import PRECISIONS, get_precision

log = logging.getLogger("ray.serve")
_DONE = object()
SEED_MASK = 0xFFFFFFFF  # llama.cpp's sampler seed is 32-bit; the API accepts 64-bit seeds


def llama_seed(seed: int) -> int:
    """A 64-bit API seed as llama.cpp's 32-bit one. Its all-ones value is
    LLAMA_DEFAULT_SEED, which llama.cpp reads as "pick a random seed": folded onto its
    neighbour so every seed stays deterministic."""
    s = seed & SEED_MASK
    return s - 1 if s == SEED_MASK else s
# llama.cpp allocates its whole context when it loads; cap what one replica reserves.
MAX_CONTEXT = 8192
MODEL_FILE = "model.gguf"  # the artifact: one GGUF file
_SEED = ("seed guide (docs/sources.md; 2x RTX 3090 NVLink, 512-token prompt, 256 out, "
         "median of 5)")
_XD = "https://github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference README"


class LlamaCpp(Backend):
    id, display, extra, dists = "llamacpp", "llama.cpp", "llamacpp", ("llama-cpp-python",)
    # every GGUF type on CPU and on CUDA from sm60; BF16 needs sm80
    gpu_support = {**{p.id: 60 for p in PRECISIONS.values() if p.is_gguf}, "bf16": 80}
    cpu_support = frozenset(p.id for p in PRECISIONS.values() if p.is_gguf)
    # layers split across GPUs (one GPU works at a time); only compute buffers on top
    parallelism, overhead_gib_per_gpu, overhead_gib_cpu = "layer", 0.5, 0.25
    max_batch, chunked_prefill = 1, False
    # its quantized caches are blocks of 32 values: q8_0 34 bytes, q4_0 18 bytes
    kv_bytes = {"fp16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
    kv_aliases = {"fp8": "q8_0"}
    # every type is quantized from a GGUF file (any type, requantized where it must be)
    loads = {p: ("gguf",) for p in gpu_support}
    calibration = (
        Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q4_k_m", 17.8, _SEED),
        Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q5_k_m", 13.4, _SEED),
        Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q4_k_m", 16.57,
                    f"{_XD}, tg512", prompt_tokens=0, output_tokens=512),
        Calibration("rtx-3090", 2, "layer", "llama-3.1-70b", "q4_k_m", 357,
                    f"{_XD}, pp512", kind="prefill", output_tokens=0),
        Calibration("rtx-4090", 2, "layer", "llama-3.1-70b", "q4_k_m", 839,
                    f"{_XD}, pp512", kind="prefill", output_tokens=0),
    )
    notes = "our engine (llama-cpp-python) decodes one sequence at a time per replica"
    features = frozenset({PENALTIES, LOGIT_BIAS, JSON_SCHEMA})  # JSON through a GBNF grammar
    feature_notes = {LOGPROBS: "llama-cpp-python reports logprobs only with logits_all, "
                               "which makes a prefill 2.4x slower (llama-server reports them)"}
    engine_class = "orchestrator.backends.llamacpp:LlamaCppEngine"

    def build_params(self, n, plan, node, sources):
        p = get_precision(n.choice.precision)
        return "gguf", {"gguf_type": p.gguf_type, "needs_imatrix": p.needs_imatrix,
                        "imatrix": sources("imatrix") if p.needs_imatrix else None}

    def describe(self, spec):
        return f"quantize {spec.source_kind} -> {spec.params['gguf_type']}" + (
            " (imatrix)" if spec.params.get("needs_imatrix") else "")

    def build(self, spec: BuildSpec, out: Path, cache: Path | None = None) -> list[str]:
        try:
            import llama_cpp
        except ImportError:
            raise MissingExtraError("llama-cpp-python", "llamacpp") from None
        if spec.source is None:
            raise UserError(f"{spec.node_type}: no GGUF source; set artifacts.sources.gguf")
        target = getattr(llama_cpp, f"LLAMA_FTYPE_{spec.params['gguf_type']}")
        if spec.params.get("needs_imatrix"):
            raise UserError(
                f"{spec.node_type}: {spec.precision} needs an importance matrix, which "
                "llama.cpp's quantizer cannot load through llama-cpp-python; quantize with "
                "llama-quantize --imatrix and point artifacts.sources.gguf at the result")
        source_type = gguf_file_type(spec.source)
        dest = out / MODEL_FILE
        if source_type == target:
            shutil.copyfile(spec.source, dest)
            return [f"source is already {spec.params['gguf_type']}: copied"]
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = target
        params.allow_requantize = True  # our source may itself be quantized (the demo model)
        rc = llama_cpp.llama_model_quantize(str(spec.source).encode(), str(dest).encode(),
                                            params)
        if rc != 0:
            raise BuildFailed(f"llama_model_quantize returned {rc}")
        notes = [f"llama_model_quantize from file type {source_type} to {target}"]
        if source_type not in (0, 1, 32):  # F32, F16, BF16
            notes.append("requantized from a quantized source: no quality above the source's")
        return notes

    def serving_context(self, n):
        return min(n.choice.memory.max_context, MAX_CONTEXT)

    def engine_args(self, n, model, artifact):
        c = n.choice
        return {"model_path": str(Path(artifact) / MODEL_FILE), "n_ctx": self.serving_context(n),
                "n_threads": int(c.replica_resources.get("CPU", 0)) or None,
                "n_gpu_layers": -1 if "GPU" in c.replica_resources else 0,
                "cache_type": c.kv_cache_dtype if c.kv_cache_dtype != "fp16" else None,
                "chat_template": get_model(model).chat_template}


def gguf_file_type(path: str) -> int | None:
    """general.file_type from a GGUF's metadata, read without loading the weights."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        value = llm.metadata.get("general.file_type")
        return int(value) if value is not None else None
    finally:
        llm.close()


class LlamaCppEngine(Engine):
    name = "llamacpp"

    def __init__(self, model_path: str, *, n_ctx: int = 2048, n_threads: int | None = None,
                 n_gpu_layers: int = 0, chat_template: str | None = None,
                 cache_type: str | None = None):
        self.model_path, self.n_ctx = model_path, n_ctx
        self.cache_type = cache_type  # q8_0 | q4_0 | None (f16)
        self.n_threads, self.n_gpu_layers = n_threads, n_gpu_layers
        self.fallback_template = chat_template
        self.llm = None
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llama")
        self.cancelled: set[str] = set()
        self.lock = threading.Lock()
        self.waiting: collections.OrderedDict[str, tuple[int, int]] = \
            collections.OrderedDict()  # id -> (prompt tokens, max_tokens)
        self.running: str | None = None
        self.running_left = 0
        self.running_context = 0
        self.rate = TokenRate()
        self.progress = Progress()
        # schema JSON -> LlamaGrammar, compiled once (a client sends the same one again
        # and again); a schema refused raises, and is not kept
        self.compiled = functools.lru_cache(maxsize=32)(self._compile)

    async def start(self) -> None:
        try:
            import llama_cpp
        except ImportError:
            raise MissingExtraError("llama-cpp-python", "llamacpp", "this replica's node") \
                from None

        kv = {}
        if self.cache_type:  # a quantized V cache needs flash attention in llama.cpp
            ggml = getattr(llama_cpp, f"GGML_TYPE_{self.cache_type.upper()}")
            kv = {"type_k": ggml, "type_v": ggml, "flash_attn": True}

        def load():
            # Prompt processing gets the same threads as decoding: left unset it takes every
            # core of the machine, which a replica holding one CPU does not own.
            self.llm = llama_cpp.Llama(
                model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                n_threads_batch=self.n_threads, n_gpu_layers=self.n_gpu_layers,
                logits_all=False, verbose=False, **kv)
            # One real decode step before the replica says it is ready: an engine build that
            # crashes on this CPU or this quantization fails the pool at `up`, not the first
            # user's request.
            for _ in self.llm.create_completion("Hello", max_tokens=1, temperature=0,
                                                stream=True):
                pass

        await asyncio.get_running_loop().run_in_executor(self.pool, load)
        self.progress.mark()

    # -- text ----------------------------------------------------------------------------
    def tokenize(self, text: str, rendered_chat: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=True, special=True)

    def count_tokens(self, text: str, rendered_chat: bool = False) -> int:
        return len(self.tokenize(text, rendered_chat))

    def render_chat(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        template = self.llm.metadata.get("tokenizer.chat_template") or self.fallback_template
        # The GGUF's own BOS is added by the tokenizer, so the template's is left empty.
        return chat.render_or_refuse(template, messages, tools=tools)

    def grammar(self, schema: str | None):
        """The GBNF grammar that holds the answer to a JSON schema, or None for none."""
        return None if schema is None else self.compiled(schema)

    def _compile(self, schema: str):
        from llama_cpp import LlamaGrammar

        try:
            g = LlamaGrammar.from_json_schema(schema, verbose=False)
        except Exception as e:  # a schema its converter cannot turn into a grammar
            raise RequestError(f"llama.cpp cannot constrain output to this schema: "
                               f"{str(e)[:200]}", "response_format") from None
        self.check_grammar(g)
        return g

    def check_grammar(self, g) -> None:
        """Parse the grammar once here: llama-cpp-python hands llama.cpp's sampler chain
        whatever llama_sampler_init_grammar returns, and a grammar llama.cpp refuses
        returns NULL, which crashes the replica at its first sampled token."""
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(
            self.llm._model.vocab, g._grammar.encode(), g._root.encode())
        if not sampler:
            raise RequestError("llama.cpp refused the grammar made from this schema",
                               "response_format")
        llama_cpp.llama_sampler_free(sampler)

    # -- generation ----------------------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        prompt = req.prompt if req.prompt is not None else self.render_chat(req.messages)
        n_prompt = req.prompt_token_count(self, prompt)
        rid = req.request_id
        grammar = self.grammar(req.json_schema)
        past = [t for t, _ in req.logit_bias if t >= self.llm.n_vocab()]
        if past:  # llama-cpp-python would index past its logits, on the worker thread
            raise RequestError(f"logit_bias token id {past[0]} is past the vocabulary "
                               f"({self.llm.n_vocab()} tokens)", "logit_bias")
        with self.lock:
            self.waiting[rid] = (n_prompt, req.max_tokens)

        def emit(item):
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work():
            with self.lock:
                if self.waiting.pop(rid, None) is None or rid in self.cancelled:
                    self.cancelled.discard(rid)
                    emit(_DONE)  # its client left while it waited
                    return
                self.running, self.running_left = rid, req.max_tokens
                self.running_context = n_prompt
            self.progress.mark()

            def idle():  # idempotent: this one worker thread runs one request at a time
                with self.lock:
                    self.running = None
                    self.running_left = self.running_context = 0
                    self.cancelled.discard(rid)
                self.progress.mark()

            try:
                seed = None if req.seed is None else llama_seed(req.seed)
                stream = self.llm.create_completion(
                    prompt, max_tokens=req.max_tokens, temperature=req.temperature,
                    top_p=req.top_p, stop=list(req.stop) or None, seed=seed, stream=True,
                    presence_penalty=req.presence_penalty,
                    frequency_penalty=req.frequency_penalty,
                    logit_bias=dict(req.logit_bias) or None, grammar=grammar)
                n = 0
                for part in stream:
                    self.progress.mark()
                    if rid in self.cancelled:  # within one decode step of the client leaving
                        stream.close()
                        break
                    choice = part["choices"][0]
                    text, finish = choice.get("text", ""), choice.get("finish_reason")
                    if text:
                        n += 1
                        self.rate.add()
                        with self.lock:
                            self.running_left -= 1
                            self.running_context += 1
                    if text or finish:
                        emit(Chunk(text, n, n_prompt, finish))
                idle()  # before the stream ends: its client then sees the engine free
                emit(_DONE)
            except Exception as e:  # handed to the caller's coroutine, never lost
                log.error("llama.cpp failed on %s: %r", rid, e)
                idle()
                emit(EngineFault(f"llama.cpp failed: {type(e).__name__}"))
            finally:
                idle()

        future = loop.run_in_executor(self.pool, work)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            if not future.done():  # the client went away: stop generating for it
                self._forget(rid)

    def _forget(self, rid: str) -> None:
        with self.lock:
            if self.waiting.pop(rid, None) is None and self.running == rid:
                self.cancelled.add(rid)  # the worker sees it at its next token

    async def cancel(self, request_id: str) -> None:
        self._forget(request_id)

    def health(self, stall_s: float) -> None:
        if self.llm is None:
            raise EngineFault("llama.cpp engine is not loaded")
        threads = list(getattr(self.pool, "_threads", ()))
        if self.pool._shutdown or (threads and not any(t.is_alive() for t in threads)):
            raise EngineFault("llama.cpp worker thread is gone")
        with self.lock:
            busy = self.running is not None or bool(self.waiting)
        stalled = self.progress.stalled_s(busy)
        if stalled > stall_s:
            raise EngineFault(f"llama.cpp has had work and made no progress for "
                              f"{stalled:.0f} s (bound {stall_s:.0f} s)")

    def stats(self) -> EngineStats:
        rate = self.rate.per_s()
        with self.lock:
            return EngineStats(
                running=int(self.running is not None), waiting=len(self.waiting),
                waiting_prefill_tokens=sum(p for p, _ in self.waiting.values()),
                waiting_output_tokens=sum(m for _, m in self.waiting.values()),
                decode_tokens_left=max(self.running_left, 0),
                running_context_tokens=self.running_context,
                kv_used_tokens=self.running_context, kv_capacity_tokens=self.n_ctx,
                recent_tokens_per_s=rate)

    async def stop(self) -> None:
        def close():
            if self.llm is not None:
                self.llm.close()
                self.llm = None

        await asyncio.get_running_loop().run_in_executor(self.pool, close)
        self.pool.shutdown(wait=False)

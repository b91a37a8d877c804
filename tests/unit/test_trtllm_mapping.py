"""TensorRT-LLM's path, with TensorRT-LLM mocked at its API boundary (the modules the
backend imports: tensorrt_llm, tensorrt_llm.llmapi, tensorrt_llm._tensorrt_engine), so the
mapping from the plan to its arguments is checked where no GPU is: which checkpoints it
refuses and why, the plan's limits, chunked context and KV cache on both paths, greedy
sampling, and abort on cancel. tests/gpu/ runs the real thing."""

import asyncio
import dataclasses
import json
import sys
import types

import pytest

from orchestrator.backends.trtllm import (MODELOPT_CONFIG, PYTORCH_RECORD, RUNTIME_RECORD,
                                          Trtllm, TrtllmEngine, checkpoint_refusal,
                                          sampling_kwargs)
from orchestrator.build.spec import build_specs
from orchestrator.config import load_cluster_spec
from orchestrator.engines.base import GenerateRequest
from orchestrator.errors import BuildFailed
from orchestrator.planner.select import plan_cluster
from tests.conftest import CLUSTERS


class Recorder:
    """A constructor that remembers its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class FakeResult:
    def __init__(self):
        self.aborted = False

    def abort(self):
        self.aborted = True

    async def __aiter__(self):
        for n in range(1, 1000):
            await asyncio.sleep(0)
            out = types.SimpleNamespace(token_ids=list(range(n)), text_diff="x",
                                        finish_reason=None)
            yield types.SimpleNamespace(outputs=[out])


class FakeLLM(Recorder):
    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        FakeLLM.made.append(self)
        self.results: list[FakeResult] = []
        self.saved = None
        self.tokenizer = None

    def generate_async(self, inputs, params, streaming=False):
        self.params = params
        self.results.append(FakeResult())
        return self.results[-1]

    def save(self, path):
        self.saved = path

    def shutdown(self):
        pass


@pytest.fixture
def trt(monkeypatch):
    """Install a fake TensorRT-LLM; ``engine=True`` adds the engine-build path."""
    def install(engine: bool):
        FakeLLM.made = []
        root = types.ModuleType("tensorrt_llm")
        root.LLM, root.SamplingParams, root.BuildConfig = FakeLLM, Recorder, Recorder
        root.__version__ = "0.0-fake"
        api = types.ModuleType("tensorrt_llm.llmapi")
        api.KvCacheConfig, api.QuantConfig = Recorder, Recorder
        api.QuantAlgo = {"W4A16_AWQ": "W4A16_AWQ", "FP8": "FP8"}
        monkeypatch.setitem(sys.modules, "tensorrt_llm", root)
        monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", api)
        if engine:
            eng = types.ModuleType("tensorrt_llm._tensorrt_engine")
            eng.LLM = FakeLLM
            monkeypatch.setitem(sys.modules, "tensorrt_llm._tensorrt_engine", eng)
        else:  # newer releases: importing it fails
            monkeypatch.setitem(sys.modules, "tensorrt_llm._tensorrt_engine", None)
    return install


@pytest.fixture(scope="module")
def specs():
    spec = load_cluster_spec(CLUSTERS / "mixed.yaml")
    return {s.node_type: s for s in build_specs(plan_cluster(spec), spec)}


def _checkpoint(path, quant_method=None, modelopt=False):
    path.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"]}
    if quant_method:
        config["quantization_config"] = {"quant_method": quant_method, "bits": 4}
    (path / "config.json").write_text(json.dumps(config))
    if modelopt:
        (path / MODELOPT_CONFIG).write_text(json.dumps({"quantization": {
            "quant_algo": "W4A16_AWQ"}}))
    return str(path)


def test_an_autoawq_checkpoint_is_refused_with_the_backend_that_loads_it(tmp_path):
    why = checkpoint_refusal(_checkpoint(tmp_path / "awq", "awq"), "W4A16_AWQ", True)
    assert "AWQ checkpoint" in why and "ModelOpt" in why and "awq_marlin" in why
    why = checkpoint_refusal(_checkpoint(tmp_path / "gptq", "gptq"), "W4A16_GPTQ", False)
    assert "gptq_marlin" in why


def test_modelopt_and_f16_checkpoints_pass_where_the_path_can_use_them(tmp_path):
    assert checkpoint_refusal(_checkpoint(tmp_path / "mo", modelopt=True), "W4A16_AWQ",
                              False) is None
    f16 = _checkpoint(tmp_path / "f16")
    assert checkpoint_refusal(f16, None, False) is None
    assert checkpoint_refusal(f16, "FP8", True) is None  # the engine build quantizes
    why = checkpoint_refusal(f16, "FP8", False)  # the PyTorch backend would not
    assert "does not quantize at load time" in why and "twice the planned memory" in why


def test_greedy_is_top_k_one():
    assert sampling_kwargs(GenerateRequest("a", temperature=0)) == {
        "max_tokens": 256, "stop": None, "seed": None, "top_k": 1, "top_p": None,
        "temperature": None}
    kw = sampling_kwargs(GenerateRequest("a", temperature=0.7, top_p=0.9, stop=("x",)))
    assert (kw["temperature"], kw["top_p"], kw["stop"]) == (0.7, 0.9, ["x"])
    assert "top_k" not in kw


def test_pytorch_path_refuses_an_autoawq_checkpoint_at_build(trt, specs, tmp_path):
    trt(engine=False)
    spec = specs["rtx-3090-x2-nvlink"].model_copy(
        update={"source": _checkpoint(tmp_path / "awq", "awq")})
    with pytest.raises(BuildFailed, match="rtx-3090-x2-nvlink: .*awq_marlin"):
        Trtllm().build(spec, tmp_path / "out")


def test_pytorch_path_passes_the_plans_limits_chunking_and_cache(trt, specs, tmp_path):
    trt(engine=False)
    spec = specs["rtx-3090-x2-nvlink"].model_copy(update={
        "source": _checkpoint(tmp_path / "mo", modelopt=True),
        "params": {**specs["rtx-3090-x2-nvlink"].params, "kv_cache_quant_algo": "FP8"}})
    out = tmp_path / "out"
    out.mkdir()
    notes = Trtllm().build(spec, out)
    assert "PyTorch backend" in notes[0]
    assert json.loads((out / PYTORCH_RECORD).read_text())["checkpoint"] == spec.source
    eng = TrtllmEngine(str(out), tensor_parallel_size=2)
    asyncio.run(eng.start())
    llm = FakeLLM.made[-1]
    p = spec.params
    assert llm.kwargs["model"] == spec.source and llm.kwargs["tensor_parallel_size"] == 2
    assert (llm.kwargs["max_batch_size"], llm.kwargs["max_num_tokens"],
            llm.kwargs["max_seq_len"]) == (p["max_batch_size"], p["max_num_tokens"],
                                           p["max_seq_len"])
    assert llm.kwargs["enable_chunked_prefill"] is True
    assert llm.kwargs["kv_cache_config"].kwargs == {"free_gpu_memory_fraction": 0.9,
                                                    "dtype": "fp8"}


def test_engine_path_builds_with_the_plans_quantization_and_serves_chunked(trt, specs,
                                                                          tmp_path):
    trt(engine=True)
    spec = specs["a100-80g-sxm-x4-nvlink"].model_copy(
        update={"source": _checkpoint(tmp_path / "f16")})
    out = tmp_path / "out"
    out.mkdir()
    Trtllm().build(spec, out)
    built = FakeLLM.made[-1]
    assert built.saved == str(out / "engine")
    bc = built.kwargs["build_config"].kwargs
    assert bc["max_seq_len"] == 131072 and bc["max_num_tokens"] == 8192
    assert json.loads((out / RUNTIME_RECORD).read_text())["enable_chunked_context"] is True
    (out / "engine").mkdir()
    asyncio.run(TrtllmEngine(str(out), tensor_parallel_size=4).start())
    served = FakeLLM.made[-1]
    assert served.kwargs["model"] == str(out / "engine")
    assert served.kwargs["enable_chunked_prefill"] is True
    assert served.kwargs["kv_cache_config"].kwargs == {"free_gpu_memory_fraction": 0.9}


def test_cancel_and_a_leaving_client_abort_the_request(trt, tmp_path):
    trt(engine=False)
    (tmp_path / PYTORCH_RECORD).write_text(json.dumps({
        "checkpoint": "/ckpt", "tensor_parallel_size": 1, "max_batch_size": 4,
        "max_num_tokens": 8192, "max_seq_len": 4096}))
    eng = TrtllmEngine(str(tmp_path))
    asyncio.run(eng.start())
    eng.tokenize = lambda text, rendered_chat=False: [1, 2, 3]

    async def go():
        req = dataclasses.replace(GenerateRequest("r1", prompt="hi", max_tokens=500),
                                  prompt_tokens=3)
        gen = eng.generate(req)
        await gen.__anext__()
        assert eng.stats().running == 1
        await eng.cancel("r1")  # the ingress's cancel: the engine stops decoding it
        result = FakeLLM.made[-1].results[-1]
        assert result.aborted
        await gen.aclose()  # and a client that leaves mid-stream: aborted, forgotten
        assert eng.stats().running == 0
        gen2 = eng.generate(dataclasses.replace(req, request_id="r2"))
        await gen2.__anext__()
        await gen2.aclose()
        assert FakeLLM.made[-1].results[-1].aborted

    asyncio.run(go())


def test_request_features_map_to_its_sampling_params(trt, monkeypatch, tmp_path):
    """Penalties, logprobs and a JSON schema (guided decoding, which LLM(...) is started
    with xgrammar for); logprobs read back from its per-token {id: Logprob(logprob, rank)}."""
    from orchestrator.engines.base import ranked_logprobs

    trt(engine=False)
    sp = types.ModuleType("tensorrt_llm.sampling_params")
    sp.GuidedDecodingParams = Recorder
    monkeypatch.setitem(sys.modules, "tensorrt_llm.sampling_params", sp)
    schema = {"type": "object"}
    kw = sampling_kwargs(GenerateRequest("a", presence_penalty=0.5, frequency_penalty=-1.0,
                                         logprobs=2, json_schema=json.dumps(schema)))
    assert (kw["presence_penalty"], kw["frequency_penalty"], kw["logprobs"]) == (0.5, -1.0, 2)
    assert kw["guided_decoding"].kwargs == {"json": schema}
    assert "guided_decoding" not in sampling_kwargs(GenerateRequest("b"))
    (tmp_path / PYTORCH_RECORD).write_text(json.dumps({
        "checkpoint": "/ckpt", "tensor_parallel_size": 1, "max_batch_size": 4,
        "max_num_tokens": 8192, "max_seq_len": 4096}))
    asyncio.run(TrtllmEngine(str(tmp_path)).start())
    assert FakeLLM.made[-1].kwargs["guided_decoding_backend"] == "xgrammar"
    lp = types.SimpleNamespace
    out = lp(token_ids=[7, 9], logprobs=[
        {7: lp(logprob=-0.1, rank=1), 8: lp(logprob=-2.0, rank=2), 5: lp(logprob=-3.0, rank=3)},
        {9: lp(logprob=-1.5, rank=2), 4: lp(logprob=-0.5, rank=1)}])
    items = ranked_logprobs(out, 1, 1, lambda t, _: f"<{t}>")
    assert [(t.token, t.logprob, t.top) for t in items] == [("<9>", -1.5, (("<4>", -0.5),))]
    assert ranked_logprobs(out, 0, None, lambda t, _: str(t)) == ()

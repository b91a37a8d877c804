"""From a parsed request to its answer: one job per choice (`n` of them per prompt, for
every prompt of a list), each routed and dispatched on its own (serve/dispatch.py), then
collected into one OpenAI answer or merged into one stream.

What every pool gets from here, whatever its engine: `n` > 1, a list of prompts, `echo`
(the prompt written before its completion), and tool calls read from the answer
(engines/tools.py). Ray-free: the ingress hands it its Dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterator

from orchestrator.engines.tools import parse_call
from orchestrator.router.context import RouteRequest
from orchestrator.serve import openai_out as out
from orchestrator.serve.contract import PoolRequest
from orchestrator.serve.dispatch import Dispatcher, Started, StreamTimeout
from orchestrator.serve.openai_api import ApiError, error_body

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Job:
    index: int  # the choice's index in the answer
    prompt_index: int  # which prompt of the request (usage counts each prompt once)
    rr: RouteRequest
    req: PoolRequest
    echo: str = ""  # what the choice's text begins with (completions' echo: the prompt)


@dataclass(frozen=True)
class Shape:
    """What the answer looks like, beside its choices."""

    chat: bool
    rid: str
    model: str
    tools: list[dict] | None = None  # read tool calls from each choice's text
    include_usage: bool = False


def _read_calls(choice: out.Choice, tools: list[dict] | None) -> None:
    if tools and choice.finish != "length":
        call = parse_call(choice.text, tools)
        if call is not None:
            choice.tool_calls = [call]


def _add(choice: out.Choice, c) -> None:
    choice.text += c.text
    if choice.logprobs is not None:
        choice.logprobs.extend(c.logprobs)
    choice.finish = c.finish_reason or choice.finish
    choice.prompt_tokens, choice.completion_tokens = c.prompt_tokens, c.completion_tokens


def totals(choices) -> dict:
    prompts = {}
    for job, choice in choices:
        prompts[job.prompt_index] = max(prompts.get(job.prompt_index, 0), choice.prompt_tokens)
    return out.usage(sum(prompts.values()), sum(c.completion_tokens for _, c in choices))


def _first(group: BaseExceptionGroup) -> BaseException:
    """The error to answer with: an ApiError where one job met one."""
    flat = list(group.exceptions)
    return next((e for e in flat if isinstance(e, ApiError)), flat[0])


# -- a whole answer ----------------------------------------------------------------------
async def collect_one(d: Dispatcher, job: Job, policy, shape: Shape) -> tuple[out.Choice, str]:
    """One choice, complete. Nothing has reached the client until the answer is complete,
    so a replica lost mid-answer is retried from the start on another one."""
    failures = 0
    for attempt in range(d.retries + 1):
        s = await d.start(job.rr, job.req, retry=attempt > 0, policy=policy)
        choice = out.Choice(job.index, text=job.echo,
                            logprobs=[] if job.req.logprobs is not None else None)
        try:
            async for c in d.chunks(s):
                _add(choice, c)
        except StreamTimeout:
            raise ApiError(504, f"the engine stopped sending tokens for "
                                f"{d.inter_token_timeout_s:g} s (serving."
                                f"inter_token_timeout_s); request {shape.rid}", "server_error",
                           None, "timeout") from None
        except Exception as e:
            log.error("%s failed mid-answer on %s: %r", job.req.request_id, s.replica, e)
            d.m["errors"].labels(s.dep, "replica_failed_mid_answer").inc()
            d.pass_over(s.replica)
            failures += 1
            continue
        _read_calls(choice, shape.tools)
        return choice, s.dep
    raise ApiError(503, f"request {shape.rid} failed on {failures} replicas; retry shortly",
                   "server_error", None, "replica_failed", {"Retry-After": "1"})


async def collect(d: Dispatcher, jobs: list[Job], policy, shape: Shape) -> tuple[dict, str]:
    """The whole answer and the pool of its first choice. One job failing for good cancels
    the others."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(collect_one(d, j, policy, shape)) for j in jobs]
    except BaseExceptionGroup as g:
        raise _first(g) from None
    done = [(j, t.result()[0]) for j, t in zip(jobs, tasks)]
    answer = out.full_response(shape.chat, shape.rid, shape.model, [c for _, c in done],
                               totals(done))
    return answer, tasks[0].result()[1]


# -- a stream ------------------------------------------------------------------------------
async def start(d: Dispatcher, jobs: list[Job], policy) -> list[Started]:
    """Every job up to its first token, before the stream's headers go out: a request that
    cannot start is an HTTP error, not an event inside a 200 stream."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(d.start(j.rr, j.req, policy=policy)) for j in jobs]
    except BaseException as e:  # a choice refused, or the client gone (cancelled)
        for t in tasks:  # the choices that had started: stopped on their replicas
            if t.done() and not t.cancelled() and t.exception() is None:
                s = t.result()
                d.abandon(s.request_id, s.stream)
        if isinstance(e, BaseExceptionGroup):
            raise _first(e) from None
        raise
    return [t.result() for t in tasks]


class Streamed:
    """The SSE body. It owns the started choices until its stream takes them: a client
    that leaves before the body is read (Starlette cancelled while sending the headers)
    never starts the generator, whose `finally` would stop them, so they are stopped when
    this body is dropped."""

    def __init__(self, d: Dispatcher, jobs: list[Job], started: list[Started], shape: Shape):
        self.d, self.jobs, self.started, self.shape = d, jobs, started, shape
        self.taken = False

    def __aiter__(self):
        return stream(self.d, self.jobs, self.started, self.shape, owner=self)

    def __del__(self):
        if not self.taken:
            for s in self.started:
                self.d.abandon(s.request_id, s.stream)


async def stream(d: Dispatcher, jobs: list[Job], started: list[Started],
                 shape: Shape, owner: Streamed | None = None) -> AsyncIterator[str]:
    """Server-sent events: every choice's chunks as they come, each choice's last with its
    finish reason, the usage where asked, then [DONE]. A choice that fails after its first
    token ends the stream with an error event, never a hang; the others are cancelled on
    their replicas. With tools, a choice's text is held until it ends, when it is known to
    be a call or text."""
    if owner is not None:
        owner.taken = True  # from here the `finally` below stops every choice
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(job: Job, s: Started):
        try:
            async for c in d.chunks(s):
                queue.put_nowait((job, s, c))
            queue.put_nowait((job, s, None))
        except Exception as e:  # handed over; cancellation is not
            queue.put_nowait((job, s, e))

    tasks = [asyncio.create_task(pump(j, s)) for j, s in zip(jobs, started)]
    choices = {j.index: out.Choice(j.index, logprobs=[] if j.req.logprobs is not None else None)
               for j in jobs}
    opened: set[int] = set()
    left = len(jobs)
    try:
        while left:
            job, s, item = await queue.get()
            choice = choices[job.index]
            if isinstance(item, BaseException):
                yield out.sse(_stream_error(d, shape.rid, s, item))
                break
            if item is None:
                left -= 1
                for event in _close(shape, job, choice, opened):
                    yield out.sse(event)
                continue
            offset = len(job.echo) + len(choice.text)
            _add(choice, item)
            if shape.tools or not (item.text or item.logprobs or job.index not in opened):
                continue
            lp = out.logprobs_json(shape.chat, list(item.logprobs), offset) \
                if choice.logprobs is not None else None
            text = (job.echo if job.index not in opened else "") + item.text
            yield out.sse(out.chunk(shape.chat, shape.rid, shape.model, job.index, text, None,
                                    first=job.index not in opened, logprobs=lp))
            opened.add(job.index)
        else:
            if shape.include_usage:  # as OpenAI: only when stream_options.include_usage
                yield out.sse(out.usage_chunk(shape.chat, shape.rid, shape.model, totals(
                    [(j, choices[j.index]) for j in jobs])))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    yield out.sse("[DONE]")


def _close(shape: Shape, job: Job, choice: out.Choice, opened: set[int]) -> list[dict]:
    """A choice's last events: its held text or tool call (with tools), then its finish."""
    events = []
    if shape.tools:
        _read_calls(choice, shape.tools)
        lp = out.logprobs_json(shape.chat, choice.logprobs) if choice.logprobs else None
        events.append(out.chunk(shape.chat, shape.rid, shape.model, job.index,
                                None if choice.tool_calls else choice.text, None, first=True,
                                logprobs=lp, tool_calls=choice.tool_calls))
    elif job.index not in opened:  # an answer with no text at all still opens its choice
        events.append(out.chunk(shape.chat, shape.rid, shape.model, job.index, job.echo, None,
                                first=True))
    opened.add(job.index)
    finish = "tool_calls" if choice.tool_calls else (choice.finish or "stop")
    events.append(out.chunk(shape.chat, shape.rid, shape.model, job.index, None, finish))
    return events


def _stream_error(d: Dispatcher, rid: str, s: Started, e: BaseException) -> dict:
    if isinstance(e, StreamTimeout):
        return error_body(f"the engine stopped sending tokens for "
                          f"{d.inter_token_timeout_s:g} s; request {rid}", "server_error",
                          code="timeout")
    log.error("%s failed mid-stream on %s: %r", rid, s.replica, e)
    d.m["errors"].labels(s.dep, "failed_mid_stream").inc()
    return error_body(f"the replica failed mid-stream; request {rid}", "server_error",
                      code="replica_failed")

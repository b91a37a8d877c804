"""What crosses the Ray boundary between the ingress and a pool replica: a typed request
one way, `engines.base.Chunk`s the other, and each replica's load record."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PoolRequest:
    request_id: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    prompt: str | None = None
    messages: list[dict] | None = None
    pinned: bool = False  # held to one precision: counts as demand for that pool alone
    target_replica: str | None = None  # the ingress's choice; the pool router honours it


@dataclass(frozen=True)
class LoadRecord:
    """One replica's engine load, kept in Ray's key-value store for `up`, `/health` and
    `status`: loading, ready or failed, with the reason and how long it took."""

    replica: str
    pid: int
    state: str  # loading | ready | failed
    started_at: float
    load_s: float | None = None
    reason: str | None = None

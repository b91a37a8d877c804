"""Request arrivals: a trace file or a synthetic Poisson or bursty generator.

Two trace formats, told apart by their first character:
- CSV with TIMESTAMP, ContextTokens, GeneratedTokens (the Azure LLM inference traces);
- JSON lines with timestamp (milliseconds), input_length, output_length and hash_ids,
  each prompt's 512-token block hashes (the Mooncake traces): requests with equal leading
  hashes share that prefix, which the prefix-aware router and the simulated prefix caches
  use. Their timestamps come in 3-second steps; the requests of a step are spread evenly
  over it (``_spread``).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from orchestrator.errors import UserError


@dataclass(frozen=True)
class TraceRequest:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    pinned_precision: str | None = None
    block_hashes: tuple[int, ...] = ()


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    # Seven fractional digits (the Azure trace) are more than fromisoformat takes in 3.11.
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text).timestamp()


def load_trace(path: str | Path, limit: int | None = None) -> list[TraceRequest]:
    path = Path(path)
    try:
        fh = path.open(newline="")
    except OSError as e:
        raise UserError(f"{path}: cannot read trace: {e.strerror}") from None
    with fh:
        first = fh.read(1)
        fh.seek(0)
        rows = _jsonl_rows(path, fh, limit) if first == "{" else _csv_rows(path, fh, limit)
    if not rows:
        raise UserError(f"{path}: the trace has no requests")
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    return [TraceRequest(t - t0, max(p, 1), max(o, 1), block_hashes=h) for t, p, o, h in rows]


def _jsonl_rows(path: Path, fh, limit: int | None) -> list[tuple]:
    rows = []
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append((float(d["timestamp"]) / 1000.0, int(d["input_length"]),
                         int(d["output_length"]), tuple(int(h) for h in d.get("hash_ids", ()))))
        except (ValueError, TypeError, KeyError) as e:
            raise UserError(f"{path}:{lineno}: a JSON-lines trace needs timestamp (ms), "
                            f"input_length, output_length and optionally hash_ids: "
                            f"{type(e).__name__} {e}") from None
        if limit and len(rows) >= limit:
            break
    return _spread(rows)


def _spread(rows: list[tuple]) -> list[tuple]:
    """The Mooncake traces record arrivals in 3-second steps, a burst of requests on each:
    spread the requests of one step evenly over it, or a rate scaled down would still
    deliver each burst at one instant and no rate would look light."""
    rows.sort(key=lambda r: r[0])
    steps = sorted({r[0] for r in rows})
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    typical = sorted(gaps)[len(gaps) // 2] if gaps else 0.0
    gap_after = dict(zip(steps, gaps + [typical]))
    out, i = [], 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][0] == rows[i][0]:
            j += 1
        width = gap_after[rows[i][0]] / (j - i)
        out += [(t + k * width, p, o, h) for k, (t, p, o, h) in enumerate(rows[i:j])]
        i = j
    return out


def _csv_rows(path: Path, fh, limit: int | None) -> list[tuple]:
    reader = csv.DictReader(fh)
    need = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"}
    if not need <= set(reader.fieldnames or []):
        raise UserError(f"{path}: a trace needs the columns {', '.join(sorted(need))}; "
                        f"found {', '.join(reader.fieldnames or [])}")
    rows = []
    for lineno, row in enumerate(reader, start=2):
        try:
            rows.append((_parse_time(row["TIMESTAMP"]), int(row["ContextTokens"]),
                         int(row["GeneratedTokens"]), ()))
        except (ValueError, TypeError):
            raise UserError(f"{path}:{lineno}: cannot parse {row}") from None
        if limit and len(rows) >= limit:
            break
    return rows


def synthetic(kind: str, rate: float, count: int, seed: int = 0, *, mean_prompt: int = 1020,
              mean_output: int = 129, burst_cv: float = 2.0) -> list[TraceRequest]:
    """Poisson arrivals, or bursty ones (gamma inter-arrivals with coefficient of variation
    ``burst_cv``); prompt and output lengths lognormal around the given means."""
    if kind not in ("poisson", "bursty"):
        raise UserError(f"unknown synthetic workload {kind!r}; valid: bursty, poisson")
    rng = random.Random(seed)
    t, out = 0.0, []
    shape = 1 / burst_cv**2
    for _ in range(count):
        gap = (rng.expovariate(rate) if kind == "poisson"
               else rng.gammavariate(shape, 1 / (rate * shape)))
        t += gap
        p = max(1, int(rng.lognormvariate(0, 0.8) * mean_prompt / 1.377))
        o = max(1, int(rng.lognormvariate(0, 0.8) * mean_output / 1.377))
        out.append(TraceRequest(t, p, o))
    return out


def scale_rate(reqs: list[TraceRequest], scale: float) -> list[TraceRequest]:
    """Arrival rate x ``scale``: the same requests, arrival times divided by it."""
    if scale <= 0:
        raise UserError(f"rate scale must be > 0, got {scale}")
    return [replace(r, arrival_s=r.arrival_s / scale) for r in reqs]


def pin_share(reqs: list[TraceRequest], share: float, precision: str,
              seed: int = 0) -> list[TraceRequest]:
    """Pin a random ``share`` of the requests to one precision."""
    rng = random.Random(seed)
    return [replace(r, pinned_precision=precision) if rng.random() < share else r
            for r in reqs]


def mean_rate(reqs) -> float:
    """Requests per second between the first and the last arrival."""
    arrivals = [r.arrival_s for r in reqs]
    span = max(arrivals) - min(arrivals)
    return (len(arrivals) - 1) / span if span > 0 else float("inf")

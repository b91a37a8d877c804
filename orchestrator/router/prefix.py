"""Which prompt prefixes a replica has cached, approximately, and what a hit saves.

Every engine we serve reuses the KV cache of a prompt prefix it has seen: vLLM's automatic
prefix caching, TensorRT-LLM's KV reuse, llama-server's per-slot cache. A request arrives
as a chain of block hashes (each block's hash covers every token before it, so equal
hashes mean an equal prefix); a replica's cache holds the blocks of the prompts it served
lately, evicted least recently used when its KV room is full. The router keeps one
``PrefixIndex`` per replica from what it dispatched there; the simulator keeps one per
simulated replica as that replica's true cache. Neither sees the other: the router's
index is a guess that drifts from the engine's cache as the engine evicts on its own
schedule.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Iterable, Sequence

BLOCK_TOKENS = 512  # the Mooncake trace's block; live hashing uses the same size


class PrefixIndex:
    """Block hashes in least-recently-used order, at most ``capacity_blocks`` of them."""

    def __init__(self, capacity_blocks: int):
        self.capacity = max(int(capacity_blocks), 0)
        self.blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.blocks)

    def match(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of ``hashes`` are cached (a prefix stops at a miss)."""
        n = 0
        for h in hashes:
            if h not in self.blocks:
                break
            n += 1
        return n

    def insert(self, hashes: Iterable[int]) -> None:
        """The blocks of a prompt just served: most recently used, oldest evicted."""
        if not self.capacity:
            return
        for h in hashes:
            self.blocks[h] = None
            self.blocks.move_to_end(h)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)

    def clear(self) -> None:
        self.blocks.clear()


def cached_tokens(matched_blocks: int, block_tokens: int, prompt_tokens: int) -> int:
    """Prompt tokens a hit of ``matched_blocks`` spares; the last token is always computed
    (an engine needs its logits), so a full hit still prefills one token."""
    return max(0, min(matched_blocks * block_tokens, prompt_tokens - 1))


def capacity_blocks(kv_tokens: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """The blocks a replica's KV room holds: the cache cannot outgrow it."""
    return max(kv_tokens // max(block_tokens, 1), 0)


def hash_blocks(tokens: Sequence[int], block_tokens: int = BLOCK_TOKENS) -> tuple[int, ...]:
    """Chained hashes of the full blocks of a token sequence, as engines key their prefix
    caches: block i's hash covers blocks 0..i. A trailing partial block is not cached by
    the engines, so it gets no hash."""
    out, prev = [], b""
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        h = hashlib.blake2b(prev, digest_size=8)
        h.update(b",".join(str(t).encode() for t in tokens[start:start + block_tokens]))
        prev = h.digest()
        out.append(int.from_bytes(prev, "big") >> 1)
    return tuple(out)

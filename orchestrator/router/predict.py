"""How many tokens a request will generate, predicted from what has finished.

Neither the live ingress nor the simulated router knows a request's output length; a
client's ``max_tokens`` is only a cap (and usually the endpoint's default). The predictor
keeps the output lengths of recently finished requests per prompt-length bucket (powers of
two) and predicts a quantile of its bucket (the median by default), capped by the
request's ``max_tokens``. A bucket with few samples borrows from all buckets together; with
nothing seen yet the prediction is ``prior``. The ingress and the simulator feed it the
same way: one observation per finished request.
"""

from __future__ import annotations

from collections import deque

PRIOR_OUTPUT = 256  # tokens, before anything has finished
WINDOW = 512  # recent outputs kept per bucket
MIN_SEEN = 16  # below this a bucket uses every bucket's outputs


def _bucket(prompt_tokens: int) -> int:
    return max(int(prompt_tokens), 1).bit_length()


class OutputPredictor:
    def __init__(self, quantile: float = 0.5, prior: int = PRIOR_OUTPUT,
                 window: int = WINDOW, min_seen: int = MIN_SEEN):
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.quantile, self.prior, self.min_seen = quantile, prior, min_seen
        self.window = window
        self.buckets: dict[int, deque[int]] = {}
        self.recent: deque[int] = deque(maxlen=window)
        self._cache: dict[int, int] = {}  # bucket -> prediction, dropped on each observation

    def observe(self, prompt_tokens: int, output_tokens: int) -> None:
        b = _bucket(prompt_tokens)
        self.buckets.setdefault(b, deque(maxlen=self.window)).append(int(output_tokens))
        self.recent.append(int(output_tokens))
        self._cache.clear()

    def _quantile(self, values) -> int:
        s = sorted(values)
        return s[min(len(s) - 1, int(self.quantile * len(s)))]

    def predict(self, prompt_tokens: int, max_tokens: int | None = None) -> int:
        b = _bucket(prompt_tokens)
        guess = self._cache.get(b)
        if guess is None:
            seen = self.buckets.get(b, ())
            if len(seen) >= self.min_seen:
                guess = self._quantile(seen)
            elif self.recent:
                guess = self._quantile(self.recent)
            else:
                guess = self.prior
            self._cache[b] = guess
        guess = max(guess, 1)
        return min(guess, max_tokens) if max_tokens else guess

"""A steady load for the multi-host tests: `concurrency` clients each send non-streaming
completions one after another until the file `stop` exists, and write one JSON line per
request (status, seconds, error) to `out`. Run inside a host's namespace."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


def client(base: str, stop: Path, out, lock: threading.Lock) -> None:
    body = json.dumps({"model": "gemma-3-270m", "prompt": "Count: 1 2 3", "max_tokens": 8,
                       "temperature": 0}).encode()
    while not stop.exists():
        t0 = time.time()
        req = urllib.request.Request(f"{base}/v1/completions", data=body, method="POST",
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                status, err = r.status, None
                text = json.loads(r.read())["choices"][0]["text"]
                if not isinstance(text, str):
                    status, err = 0, "no text"
        except urllib.error.HTTPError as e:
            status, err = e.code, e.read().decode()[:300]
        except Exception as e:  # a refused or dropped connection counts as lost
            status, err = 0, f"{type(e).__name__}: {e}"[:300]
        with lock:
            out.write(json.dumps({"t": t0, "s": time.time() - t0, "status": status,
                                  "error": err}) + "\n")
            out.flush()


def main() -> None:
    base, stop, out, concurrency = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    lock = threading.Lock()
    with open(out, "w") as f:
        threads = [threading.Thread(target=client, args=(base, stop, f, lock))
                   for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


if __name__ == "__main__":
    main()

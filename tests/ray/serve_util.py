"""Deploy the app on a test cluster and talk to it over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

# The reference mixed cluster emulated on this machine: a 4x A100 node and two 2x3090 nodes
# (the head, with no GPU group, joins them in conftest.ray_cluster).
A100, R3090 = "a100-80g-sxm-x4-nvlink", "rtx-3090-x2-nvlink"
MIXED_NODES = {
    "a100": {"CPU": 1, "GPU": 4, f"gpu_group:{A100}": 1},
    "r3090-a": {"CPU": 1, "GPU": 2, f"gpu_group:{R3090}": 1},
    "r3090-b": {"CPU": 1, "GPU": 2, f"gpu_group:{R3090}": 1},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deploy(app, port: int, timeout_s: float = 180) -> str:
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    serve.run(app, name="orchestrator", route_prefix="/", blocking=False)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = get(base + "/health")[1]
            if isinstance(body, dict) and body.get("status") == "ok":
                return base
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base} not healthy in {timeout_s} s")


def get(url: str, headers: dict | None = None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=30) as r:
            return r.status, json.loads(r.read().decode()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read()), dict(e.headers)


def post(url: str, body, headers: dict | None = None, timeout: float = 120):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, _json(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read()), dict(e.headers)


def _json(raw: bytes):
    try:
        return json.loads(raw.decode())
    except ValueError:
        return raw.decode()

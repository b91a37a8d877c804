"""Content-addressed artifact store.

<root>/<key>/manifest.json and the artifact's files; <key> is the sha256 of the build's
inputs (source digest, precision, backend and its version, architecture, TP size, backend
settings). A build writes into <root>/.tmp-<key>-<random>/ and renames it into place only
when every file and the manifest are written, so an interrupted build never leaves a
directory that looks complete. Loading re-hashes every file against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import OrchestratorError, UserError

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


def default_store() -> Path:
    """This node's own store: $ORCHESTRATOR_STORE, else ~/.cache/orchestrator/artifacts."""
    env = os.environ.get("ORCHESTRATOR_STORE")
    return Path(env).expanduser() if env else Path.home() / ".cache/orchestrator/artifacts"


class ArtifactError(OrchestratorError):
    """An artifact that is missing, corrupted, or made for other hardware or software."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str
    bytes: int
    executable: bool = False  # a binary (llama-server): a node that pulls it sets the bit

    @classmethod
    def of(cls, path: Path) -> "FileEntry":
        return cls(sha256=sha256_file(path), bytes=path.stat().st_size,
                   executable=bool(path.stat().st_mode & 0o111))


def restore_modes(directory: Path, manifest: "Manifest") -> None:
    """Copies through Ray carry bytes, not modes: make the manifest's executables so."""
    for rel, entry in manifest.files.items():
        if entry.executable:
            p = directory / rel
            p.chmod(p.stat().st_mode | 0o755)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    inputs: dict  # everything the key hashes
    node_type: str
    backend: str
    backend_version: str
    arch: str
    precision: str
    model: str
    files: dict[str, FileEntry]
    tool_versions: dict[str, str]
    built_on: str  # host and Ray node id
    built_at: float
    build_seconds: float
    notes: list[str] = []


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_digest(path: str | Path, cache_dir: Path | None = None) -> str:
    """sha256 of a file, or of a directory's files (names and contents), cached by
    (path, size, mtime) so a cache hit does not re-read gigabytes."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"source {path} does not exist; set artifacts.sources in the "
                        "cluster spec")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = [(str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns)
             for p in files]
    cache = (cache_dir / "digests.json") if cache_dir else None
    memo = {}
    if cache and cache.exists():
        try:
            memo = json.loads(cache.read_text())
        except ValueError:
            memo = {}
    tag = hashlib.sha256(json.dumps([str(path.resolve()), stamp]).encode()).hexdigest()
    if tag in memo:
        return memo[tag]
    h = hashlib.sha256()
    for (name, _, _), p in zip(stamp, files):
        h.update(name.encode())
        h.update(sha256_file(p).encode())
    digest = h.hexdigest()
    if cache:
        memo[tag] = digest
        _atomic_write(cache, json.dumps(memo))
    return digest


def build_key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / MANIFEST).is_file()

    def new_tmp(self, key: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{TMP_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        return tmp

    def commit(self, tmp: Path, manifest: Manifest) -> Path:
        """Hash the files, write the manifest last, and rename the directory into place."""
        _atomic_write(tmp / MANIFEST, manifest.model_dump_json(indent=2))
        final = self.path(manifest.key)
        try:
            os.rename(tmp, final)
        except OSError:
            if self.has(manifest.key):  # another builder won the race with the same inputs
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
        return final

    def manifest(self, key: str) -> Manifest:
        path = self.path(key) / MANIFEST
        if not path.is_file():
            raise ArtifactError(f"no artifact {key} in {self.root}")
        try:
            return Manifest.model_validate_json(path.read_text())
        except ValueError as e:
            raise ArtifactError(f"artifact {key}: unreadable manifest: {e}") from None

    def list(self) -> list[Manifest]:
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and not d.name.startswith(TMP_PREFIX) and (d / MANIFEST).is_file():
                try:
                    out.append(self.manifest(d.name))
                except ArtifactError:
                    continue
        return out

    def newest(self) -> dict[tuple[str, str, str, str, str], Manifest]:
        """The newest artifact per (node type, model, precision, backend, architecture):
        what a deployment takes, and what `gc` keeps."""
        out: dict[tuple[str, str, str, str, str], Manifest] = {}
        for m in self.list():
            k = (m.node_type, m.model, m.precision, m.backend, m.arch)
            if k not in out or m.built_at > out[k].built_at:
                out[k] = m
        return out

    def find(self, node_type: str, model: str, precision: str, backend: str) -> Path | None:
        """The newest artifact built for this node type, model, precision and backend."""
        found = [m for k, m in self.newest().items() if k[:4] == (node_type, model,
                                                                  precision, backend)]
        return self.path(max(found, key=lambda m: m.built_at).key) if found else None

    def verify(self, key: str) -> list[str]:
        """Problems with an artifact's files; empty when every digest matches."""
        m = self.manifest(key)
        problems = []
        for name, entry in m.files.items():
            p = self.path(key) / name
            if not p.is_file():
                problems.append(f"{name}: missing")
            elif p.stat().st_size != entry.bytes:
                problems.append(f"{name}: {p.stat().st_size} bytes, manifest says {entry.bytes}")
            elif sha256_file(p) != entry.sha256:
                problems.append(f"{name}: sha256 differs from the manifest")
        return problems

    def load(self, key: str, *, arch: str | None = None,
             backend_version: str | None = None) -> Manifest:
        """The manifest of a verified artifact made for this architecture and version."""
        return check_artifact(self, key, arch=arch, backend_version=backend_version)

    def temp_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.name.startswith(TMP_PREFIX))

    def gc(self, keep: set[str] | None = None, dry_run: bool = False,
           min_tmp_age_s: float = 3600) -> list[Path]:
        """Remove leftovers of interrupted builds older than ``min_tmp_age_s`` and, when
        ``keep`` is given, every artifact not in it."""
        now = time.time()
        doomed = [p for p in self.temp_dirs() if now - p.stat().st_mtime >= min_tmp_age_s]
        if keep is not None:
            doomed += [self.path(m.key) for m in self.list() if m.key not in keep]
        if not dry_run:
            for p in doomed:
                shutil.rmtree(p, ignore_errors=True)
        return doomed


def check_artifact(store: ArtifactStore, key: str, *, arch: str | None,
                   backend_version: str | None) -> Manifest:
    m = store.manifest(key)
    if arch is not None and m.arch != arch:
        raise ArtifactError(f"artifact {key} was built for {m.arch}, this node is {arch}: "
                            f"rebuild it on a node of this type (orchestrator build)")
    if backend_version is not None and m.backend_version != backend_version:
        raise ArtifactError(
            f"artifact {key} was built with {m.backend} {m.backend_version}, this node has "
            f"{backend_version}: rebuild it (orchestrator build --force)")
    problems = store.verify(key)
    if problems:
        raise ArtifactError(f"artifact {key} is corrupted: {'; '.join(problems)}; rebuild it "
                            "(orchestrator build --force)")
    return m

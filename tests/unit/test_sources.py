"""hf:// and file:// sources. The hub is not reachable from this machine: a stand-in
module serves the files and the hub's digests, so what is tested is our part (parsing,
the digest check on every file, the errors), not huggingface_hub."""

import hashlib
import sys
import types
from dataclasses import dataclass

import pytest

from orchestrator.build.sources import local_path, parse_hf
from orchestrator.build.store import ArtifactError, sha256_file
from orchestrator.errors import MissingExtraError, UserError


@dataclass
class Info:
    path: str
    blob_id: str
    lfs: dict | None = None


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    repo = tmp_path / "snapshot"
    repo.mkdir()
    (repo / "config.json").write_text('{"a": 1}')
    (repo / "model.gguf").write_bytes(b"weights" * 100)
    truth = {"config.json": Info("config.json", _git_blob(b'{"a": 1}')),
             "model.gguf": Info("model.gguf", "x" * 40,
                                {"sha256": sha256_file(repo / "model.gguf")})}
    calls = []

    class HfApi:
        def get_paths_info(self, repo_id, paths, expand=False, revision=None):
            return [truth[p] for p in paths]

        def list_repo_tree(self, repo_id, recursive=False, expand=False, revision=None):
            return list(truth.values())

    def hf_hub_download(repo_id, filename, revision=None):
        calls.append((repo_id, filename, revision))
        return str(repo / filename)

    def snapshot_download(repo_id, revision=None):
        calls.append((repo_id, None, revision))
        return str(repo)

    module = types.SimpleNamespace(HfApi=HfApi, hf_hub_download=hf_hub_download,
                                   snapshot_download=snapshot_download)
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    return repo, calls


def test_hf_uris_parse():
    assert parse_hf("org/repo", "f") == ("org/repo", None, None)
    assert parse_hf("org/repo/sub/x.gguf@v2", "f") == ("org/repo", "sub/x.gguf", "v2")
    with pytest.raises(UserError, match="hf://ORG/REPO"):
        parse_hf("justrepo", "f")


def test_a_file_and_a_snapshot_come_from_the_hub_checked(hub):
    repo, calls = hub
    assert local_path("hf://org/m/model.gguf@main", "s") == str(repo / "model.gguf")
    assert local_path("hf://org/m", "s") == str(repo)
    assert calls == [("org/m", "model.gguf", "main"), ("org/m", None, None)]


def test_a_file_that_differs_from_the_hubs_digest_is_refused(hub):
    repo, _ = hub
    (repo / "config.json").write_text('{"a": 2}')
    with pytest.raises(ArtifactError, match="config.json from the hub has digest"):
        local_path("hf://org/m", "s")


def test_without_huggingface_hub_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingExtraError, match=r"orchestrator\[hf\]"):
        local_path("hf://org/m", "s")


def test_paths_and_file_uris(tmp_path):
    assert local_path(f"file://{tmp_path}/x", "s") == f"{tmp_path}/x"
    assert local_path(str(tmp_path / "x"), "s") == f"{tmp_path}/x"
    with pytest.raises(UserError, match="a path, file://PATH or hf://"):
        local_path("s3://b/x", "s")

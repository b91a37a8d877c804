"""Where a source is, as the spec names it: a path, a file:// URI, or hf://ORG/REPO
(a whole checkpoint) or hf://ORG/REPO/FILE (one file, e.g. a GGUF), each with an optional
@REVISION. A Hugging Face source is downloaded on the machine that runs `build` or `up`
(huggingface_hub, the `hf` extra; where the network reaches the hub) and every file is
checked against the hub's own digest (sha256 for LFS files, the git blob id for others);
build nodes then copy it from that machine through Ray (build/transfer.fetch_source)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from orchestrator.build.store import ArtifactError, sha256_file
from orchestrator.errors import MissingExtraError, UserError


def local_path(where: str, field: str) -> str:
    """The source's path on this machine; `field` names the spec key in errors."""
    scheme, sep, rest = where.partition("://")
    if not sep:
        return str(Path(where).expanduser())
    if scheme == "file":
        return str(Path(rest).expanduser())
    if scheme == "hf":
        return from_hub(rest, field)
    raise UserError(f"{field}: {where!r}: a path, file://PATH or hf://ORG/REPO[/FILE]"
                    "[@REVISION]")


def parse_hf(rest: str, field: str) -> tuple[str, str | None, str | None]:
    rest, _, revision = rest.partition("@")
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 2:
        raise UserError(f"{field}: hf://{rest}: write hf://ORG/REPO or hf://ORG/REPO/FILE")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None, revision or None


def from_hub(rest: str, field: str) -> str:
    try:
        import huggingface_hub as hub
    except ImportError:
        raise MissingExtraError("huggingface_hub", "hf", "this machine") from None
    repo, path, revision = parse_hf(rest, field)
    api = hub.HfApi()
    if path:
        local = hub.hf_hub_download(repo, path, revision=revision)
        for info in api.get_paths_info(repo, [path], expand=True, revision=revision):
            check(Path(local), info)
        return str(local)
    root = Path(hub.snapshot_download(repo, revision=revision))
    for info in api.list_repo_tree(repo, recursive=True, expand=True, revision=revision):
        if getattr(info, "blob_id", None) is not None:  # a file, not a folder
            check(root / info.path, info)
    return str(root)


def check(local: Path, info) -> None:
    """The downloaded file against the hub's digest of it."""
    lfs = getattr(info, "lfs", None)
    if lfs:
        want, got = lfs["sha256"], sha256_file(local)
    else:  # a plain git blob: sha1 over "blob <size>\0" and the bytes
        data = local.read_bytes()
        want = info.blob_id
        got = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    if got != want:
        raise ArtifactError(f"{info.path} from the hub has digest {got[:12]}, the hub says "
                            f"{want[:12]}: delete it from the Hugging Face cache and build again")

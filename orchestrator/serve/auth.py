"""Optional API keys for the endpoint.

Keys are read by the CLI (from an environment variable or a file) and only their SHA-256
digests reach Ray: Serve keeps deployment arguments in its checkpoint and shows them in its
config, so the keys themselves never leave the machine that ran `orchestrator up`. A
presented key is hashed and compared with every digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from orchestrator.errors import UserError

DEFAULT_ENV = "ORCHESTRATOR_API_KEYS"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(text: str) -> list[str]:
    """One key per line or comma-separated; blank lines and `#` comments ignored."""
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        keys += [k.strip() for k in line.split(",") if k.strip()]
    return keys


def load_keys(env: str | None = DEFAULT_ENV, file: str | Path | None = None) -> list[str]:
    keys: list[str] = []
    if env and os.environ.get(env):
        keys += parse_keys(os.environ[env])
    if file:
        try:
            keys += parse_keys(Path(file).read_text())
        except OSError as e:
            raise UserError(f"api keys file {file}: {e.strerror}; give a readable file with "
                            "one key per line") from None
        if not keys:
            raise UserError(f"api keys file {file} holds no key; put one key per line")
    short = [k for k in keys if len(k) < 16]
    if short:
        # The key is not printed: only how long it is.
        raise UserError(f"{len(short)} api key(s) shorter than 16 characters; use long random "
                        "keys, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return keys


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def allowed(presented: str | None, digests: list[str]) -> bool:
    """True when the presented key's digest equals one of `digests`. Every digest is
    compared, whatever matches, so timing says nothing about which key or how much of it."""
    if presented is None:
        return False
    mine = digest(presented)
    ok = False
    for d in digests:
        ok |= hmac.compare_digest(mine, d)
    return ok

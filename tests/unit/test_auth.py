"""API keys: parsing, loading errors that never print a key, constant-time matching."""

import pytest

from orchestrator.errors import UserError
from orchestrator.serve.auth import allowed, bearer, digest, load_keys, parse_keys

A, B = "a" * 20 + "1", "b" * 20 + "2"


def test_parse_keys_accepts_lines_commas_and_comments():
    assert parse_keys(f"{A}, {B}\n# old key\n\n  {A}2  # rotated\n") == [A, B, A + "2"]


def test_load_keys_from_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEYS", A)
    f = tmp_path / "keys"
    f.write_text(B + "\n")
    assert load_keys("MY_KEYS", f) == [A, B]
    monkeypatch.delenv("MY_KEYS")
    assert load_keys("MY_KEYS", None) == []


@pytest.mark.parametrize("content, needle", [
    (None, "No such file"), ("# nothing\n", "holds no key"), ("short\n", "shorter than 16")])
def test_load_keys_errors_name_the_problem_not_the_key(tmp_path, content, needle):
    f = tmp_path / "keys"
    if content is not None:
        f.write_text(content)
    with pytest.raises(UserError) as e:
        load_keys(None, f)
    assert needle in str(e.value) and "short\n" not in str(e.value)


@pytest.mark.parametrize("header, key", [
    (f"Bearer {A}", A), (f"bearer  {A}", A), ("Bearer", None), (f"Basic {A}", None),
    (None, None), ("", None)])
def test_bearer(header, key):
    assert bearer(header) == key


def test_allowed_compares_digests():
    digests = [digest(A), digest(B)]
    assert allowed(A, digests) and allowed(B, digests)
    assert not allowed(A[:-1], digests) and not allowed(None, digests)
    assert not allowed(A, [])

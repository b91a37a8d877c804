"""The isolation helper native-engine tests run in: a crash is a failed test that names the
signal, and pytest lives on."""

import pytest

from tests.isolated import IsolatedError, run_isolated


def segfault():
    import ctypes

    ctypes.string_at(0)


def raises():
    raise ValueError("bad model file")


def answer(x):
    return {"twice": 2 * x}


def test_a_native_crash_fails_the_test_with_the_signal():
    with pytest.raises(pytest.fail.Exception, match="died of SIGSEGV"):
        run_isolated(segfault)


def test_an_exception_comes_back_with_its_type():
    with pytest.raises(IsolatedError, match="ValueError: bad model file"):
        run_isolated(raises)


def test_a_result_comes_back():
    assert run_isolated(answer, 21) == {"twice": 42}

"""Skips for what `make test` provides are failures under CI.

A test that needs something `make test` installs or expects (a Debian package from the
Makefile's apt lists, a package of the `test` extra, the recorded calls in ../shared) skips on a
developer's machine that lacks it, saying what is missing. When the environment variable CI is
set, the same absence fails the test: a CI run that silently skipped the SIPp replay proved
nothing about it. What `make test` does not provide (hardware, root, a raw socket) stays an
ordinary skip with its reason, everywhere.

Use ``require(ok, what)`` inside a test or fixture, ``require_import(module, what)`` for an
optional package, or the mark ``provided(ok, what)`` where ``pytest.mark.skipif`` would go. The
hooks below are imported by tests/conftest.py (and loaded with ``-p tests.provided`` elsewhere).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

MARK = "provided"


def in_ci() -> bool:
    """CI set to anything but "", 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """The test cannot run without ``what``: skip it, or under CI fail it."""
    if in_ci():
        pytest.fail(f"{what} (CI is set, and `make test` provides this: missing is a failure here)", pytrace=False)
    # reported at the test, as a skipif mark is, rather than at this line
    raise pytest.skip.Exception(what, _use_item_location=True)


def require(ok: object, what: str) -> None:
    """Go on when ``ok`` is true; else ``missing(what)``."""
    if not ok:
        missing(what)


def require_import(module: str, what: str) -> ModuleType:
    """The module, or ``missing(what)`` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing(f"{what} ({e})")


def provided(ok: object, what: str) -> pytest.MarkDecorator:
    """Like ``pytest.mark.skipif(not ok, reason=what)``, for something `make test` provides."""
    return getattr(pytest.mark, MARK)(ok=bool(ok), what=what)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(ok, what): needs what `make test` provides; "
                                       "skipped without it, failed without it when CI is set")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(MARK):
        require(mark.kwargs["ok"], mark.kwargs["what"])

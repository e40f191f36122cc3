"""Shared test helpers: free loopback ports; skips that fail under CI (tests/provided.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.config import STATE_DIR_ENV

from tests.provided import pytest_configure, pytest_runtest_setup  # noqa: F401 (pytest hooks)


def free_port(kind: str = "both") -> int:
    """A port free on 127.0.0.1 for UDP and TCP alike (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            if kind == "tcp":
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@pytest.fixture(autouse=True)
def _state_dir_is_the_tests_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test is a box of its own: its tmp_path is the state directory, where the relative
    paths of a configuration resolve (decision 0013), unless the test names another.  Without
    it, a test that loads <tmp_path>/faxbridge.toml would keep its spool in the checkout's ./var.
    Harnesses that start the appliance in a directory of their own pass --state-dir."""
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))


@pytest.fixture(autouse=True)
def _umask_restored_after_each_test() -> Iterator[None]:
    """An entry point run in-process sets umask 077 (as the appliance does); put the worker's back,
    or a later test's directories come out 0700 (Postfix's postsuper then cannot read its queue)."""
    yield
    if _current_umask() != _UMASK:
        os.umask(_UMASK)


@pytest.fixture(autouse=True)
def _normal_scheduling_after_each_test() -> Iterator[None]:
    """A test that runs the daemon in-process raises the pytest worker's thread to SCHED_RR (the
    daemon's loop does that): put it back, so no later test runs real-time by accident."""
    yield
    if hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) != os.SCHED_OTHER:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The image's boot test first: it is the longest chain (a cold image build, then boots), so
    its xdist worker starts it while the other workers take everything else.

    And ``xdist_group`` made to work again: pytest-xdist 3.8 marks a group by appending
    ``@name`` to ``item._nodeid``, which pytest 9 no longer reads (a node's id is ``item._id``),
    so every group was silently spread over all workers (found when the image's eight tests, one
    story on one machine, each booted their own). Same suffix, set where pytest 9 reads it."""
    def first(item: pytest.Item) -> int:  # the drill before the image build on their worker (see test_drill)
        path = str(item.fspath)
        return 0 if path.endswith("tests/e2e/test_drill.py") else 1 if "tests/image/" in path else 2

    items.sort(key=first)
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and not item.nodeid.endswith("@" + "_".join(names)):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]

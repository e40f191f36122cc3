"""Spool fixtures: a fresh spool in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.spool.store import Spool


@pytest.fixture
def spool(tmp_path: Path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()

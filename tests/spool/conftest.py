"""Spool fixtures: a fresh spool in a temporary directory."""

from __future__ import annotations

import sys
from pathlib import Path

# the helper modules beside this file import by name under any --import-mode
sys.path.insert(0, str(Path(__file__).parent))

import pytest

from appliance.spool.store import Spool


@pytest.fixture
def spool(tmp_path: Path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()

"""A test hook that dies like SIGKILL at a named point, so durability tests can stop anywhere."""

from __future__ import annotations

import os


def crash_point(label: str) -> None:
    """Exit at once, without cleanup, when ``FAXBRIDGE_CRASH_AT`` equals ``label``."""
    if os.environ.get("FAXBRIDGE_CRASH_AT") == label:
        os._exit(137)

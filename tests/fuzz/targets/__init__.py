"""The fuzz targets: one module per parser that takes outside input.

Each module has ``TestOneInput(data: bytes) -> None``, which feeds ``data`` to the product code
and asserts its contract (what it may return, which one error it may raise, what must round-trip);
any other exception is a finding.  ``MAX_LEN`` caps the inputs libFuzzer makes (and so the corpus
files); ``DICTS`` names the tests/fuzz/dicts/*.dict files of tokens the mutator may insert.  Nothing here imports the product code: ``atheris_main`` imports a target inside
``atheris.instrument_imports`` so the product modules it pulls in are instrumented for coverage.
"""
from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from types import ModuleType

#: every target, in the order ``make fuzz`` runs them
TARGETS: tuple[str, ...] = (
    "sip_message",
    "sip_framer",
    "sip_gate",
    "sdp",
    "referred_by",
    "digest_client",
    "digest_server",
    "rtp_packet",
    "playout",
    "udptl_decode",
    "udptl_stream",
    "at_channel",
    "modem_fparams",
    "class2_session",
    "t30_frames",
    "tiff_pages",
    "config_load",
    "config_restore",
    "boot_config",
    "backup_file",
    "web_params",
    "web_settings_form",
    "web_api",
    "fax_number",
)


def load(name: str) -> ModuleType:
    """The target module `name` (ValueError for a name that is not in TARGETS)."""
    if name not in TARGETS:
        raise ValueError(f"unknown fuzz target {name!r}; known: {', '.join(TARGETS)}")
    return importlib.import_module(f"{__name__}.{name}")


def scratch(prefix: str) -> Path:
    """A private directory for a target that must use files, in memory where the system has it
    (/dev/shm: the targets fsync thousands of times a second)."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))

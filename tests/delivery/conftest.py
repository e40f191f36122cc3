"""Fixtures for the delivery tests live in smtp_harness.py (importable by a unique name)."""

from smtp_harness import ca, ca_file, smtp_server, tiff_bytes  # noqa: F401  (pytest fixtures)

"""Fixtures for the delivery tests live in smtp_harness.py (importable by a unique name)."""

import sys
from pathlib import Path as _Path

# the helper modules beside this file import by name under any --import-mode
sys.path.insert(0, str(_Path(__file__).parent))

from smtp_harness import ca, ca_file, smtp_server, spool, tiff_bytes  # noqa: F401  (pytest fixtures)
from oauth_harness import token_server  # noqa: F401,E402  (pytest fixture)

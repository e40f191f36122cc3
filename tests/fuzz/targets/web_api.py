"""The fax list and the JSON API through Flask's test client: query parameters end to end.

Input: "PATH?QUERY" for one of PATHS (anything else is skipped), sent as a logged-in GET to an
app whose spool holds a few real faxes.  Contract: every answer is 200 or 400 (a bad parameter
is the client's fault: never a 500), and the API answers JSON.
"""
from __future__ import annotations

import sys
from pathlib import Path

from appliance.config import Config, SpoolConfig
from appliance.spool.store import Spool
from appliance.web.app import create_app
from tests.fuzz.targets import scratch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "web"))
from webauth import login  # noqa: E402
from webfax import STANDARD, T0, add_fax  # noqa: E402

MAX_LEN = 1024
DICTS = ("web", "_text")
PATHS = ("/api/faxes", "/faxes", "/api/route")
_CONFIG = Config(spool=SpoolConfig(dir="spool"), base_dir=scratch("fuzz-webapi-"))
_spool = Spool(_CONFIG.path(_CONFIG.spool.dir))
for n in range(3):
    add_fax(_spool, T0 + 3600 * n, dpis=[STANDARD], recipients=["sales@example.com"], caller_number=f"+4930{n}",
            called_number="+4930999100", remote_ident=f"+49 30 {n}")
_spool.close()
_APP = create_app(_CONFIG)
_APP.logger.disabled = True
_CLIENT = _APP.test_client()
login(_CLIENT)


def TestOneInput(data: bytes) -> None:
    path, _, query = data.decode("latin-1").partition("?")
    if path not in PATHS:
        return
    response = _CLIENT.get(path, query_string=query)
    assert response.status_code in (200, 400), (response.status_code, data)
    if path.startswith("/api/"):
        assert response.is_json, response.headers

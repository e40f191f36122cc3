"""The SIP core stands alone: plain values and its own protocols in, never the application's config."""
from __future__ import annotations

import subprocess
import sys

IMPORT_ALL = """
import importlib, pkgutil, sys
import appliance.sip
for m in pkgutil.iter_modules(appliance.sip.__path__):
    importlib.import_module("appliance.sip." + m.name)
print(sorted(n for n in sys.modules if n.startswith("appliance.") and not n.startswith("appliance.sip")))
"""


def test_the_sip_core_imports_no_application_module() -> None:
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['appliance.netutil', 'appliance.protocol', 'appliance.strictnum', 'appliance.tlskeys']"

"""Bench configuration for the hardware tests, from environment variables (see README.md).

Every test is skipped, with the variable it misses named, unless the bench is described:

- ``FAXBRIDGE_HW_MODEM``: the modem under test, as the appliance would be configured
  (``/dev/serial/by-id/usb-...``);
- ``FAXBRIDGE_HW_SENDER``: a second modem's path that efax dials out on, or ``fax-machine``
  when a person sends from a real fax machine;
- ``FAXBRIDGE_HW_NUMBER``: the number (or PBX extension) that rings the modem under test;
- ``FAXBRIDGE_HW_SPEED`` / ``FAXBRIDGE_HW_FLOW``: serial speed and flow control (115200, rtscts);
- ``FAXBRIDGE_HW_HUMAN=1``: a person is at the bench for the tests that need hands.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Bench:
    modem: str
    sender: str
    number: str
    speed: int
    flow: str
    human: bool

    @property
    def sender_is_modem(self) -> bool:
        return bool(self.sender) and self.sender != "fax-machine"


def _bench() -> Bench:
    speed, flow = os.environ.get("FAXBRIDGE_HW_SPEED", "115200"), os.environ.get("FAXBRIDGE_HW_FLOW", "rtscts")
    if not speed.isdigit():
        pytest.fail(f"FAXBRIDGE_HW_SPEED={speed!r} is not a number of baud")
    if flow not in ("rtscts", "xonxoff", "none"):
        pytest.fail(f"FAXBRIDGE_HW_FLOW={flow!r}: must be rtscts, xonxoff or none")
    return Bench(modem=os.environ.get("FAXBRIDGE_HW_MODEM", ""),
                 sender=os.environ.get("FAXBRIDGE_HW_SENDER", ""),
                 number=os.environ.get("FAXBRIDGE_HW_NUMBER", ""),
                 speed=int(speed), flow=flow,
                 human=os.environ.get("FAXBRIDGE_HW_HUMAN", "") == "1")


@pytest.fixture
def bench() -> Bench:
    b = _bench()
    if not b.modem:
        pytest.skip("FAXBRIDGE_HW_MODEM is not set: no modem under test (see hwtests/README.md)")
    if not os.path.exists(b.modem):
        pytest.skip(f"FAXBRIDGE_HW_MODEM={b.modem} does not exist: modem not plugged in?")
    return b


@pytest.fixture
def efax_sender(bench: Bench) -> Bench:
    """A second modem driven by efax dials the modem under test."""
    if not bench.sender_is_modem:
        pytest.skip("FAXBRIDGE_HW_SENDER is not a modem path (efax needs one to send from)")
    if not bench.number:
        pytest.skip("FAXBRIDGE_HW_NUMBER is not set: efax does not know what to dial")
    if not os.path.exists(bench.sender):
        pytest.skip(f"FAXBRIDGE_HW_SENDER={bench.sender} does not exist")
    if shutil.which("efax") is None or shutil.which("tiffcp") is None:
        pytest.skip("needs Debian's efax and libtiff-tools (apt-get install efax libtiff-tools)")
    return bench


@pytest.fixture
def human(bench: Bench) -> Bench:
    if not bench.human:
        pytest.skip("needs a person at the bench: set FAXBRIDGE_HW_HUMAN=1 and follow the printed steps")
    return bench

"""The components' public status() and what the control socket makes of them.

The control socket's JSON is read by the web process (dashboard, /metrics) and by the box's
health check: its shape must not change when the daemon's insides do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest

from appliance.config import Config, ModemConfig, SipConfig, SpoolConfig, SystemConfig
from appliance.control import ApplianceControl
from appliance.fax.pages import write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.media.clock import MediaClock
from appliance.calls.modem_line import LineSettings, LineState
from appliance.modem.manager import ModemManager
from appliance.calls.sip_setup import peer_table
from appliance.sip.policy import CallGate
from appliance.sip.transport import SipEndpoint
from appliance.spool.stats import oldest_waiting, queue_counts
from appliance.spool.store import JOB_STATES, Spool
from tests.control.harness import SpoolAppliance

T0 = 1_700_000_000.0
CALL_KEYS = {"line", "mode", "codec", "bit_rate", "ecm", "pages", "page", "remote_ident", "fax_id",
             "caller_number", "caller_name", "called_number", "started", "call_id"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[SpoolAppliance]:
    cfg = Config(sip=SipConfig(listen=["udp:127.0.0.1:5999"]), spool=SpoolConfig(dir="spool"),
                 modem=ModemConfig(devices=["/dev/ttyNOSUCHMODEM"]),
                 system=SystemConfig(control_socket=str(tmp_path / "fb.sock")), base_dir=tmp_path)
    a = SpoolAppliance(cfg)
    yield a
    a.close()


def status(app: Any) -> dict[str, Any]:
    return asyncio.run(ApplianceControl(app).status({"cmd": "status"}))


def test_the_status_keeps_its_shape(app: SpoolAppliance) -> None:
    app.add_call("c1@gw", mode="g711", pages=1, caller_number="+4930111", called_number="5551000", line="sip:gw")
    app.modems.lines["/dev/ttyNOSUCHMODEM"].state = LineState.RECEIVING  # type: ignore[union-attr]
    st = status(app)
    assert set(st) == {"version", "pid", "started", "restart_needed", "uptime", "sip", "modems", "calls", "queue",
                       "oldest_waiting", "stats", "media"}
    assert set(st["sip"]) == {"listeners", "registrations", "peers", "refused", "connections", "max_calls"}
    assert st["sip"]["listeners"] == [{"transport": "udp", "host": "127.0.0.1", "port": 5999}]
    sip_call, modem_call = st["calls"]
    assert set(sip_call) == set(modem_call) == CALL_KEYS
    assert (sip_call["mode"], sip_call["codec"], sip_call["pages"], sip_call["page"], sip_call["line"]) == \
        ("g711", "PCMA", 1, 2, "sip:gw")
    assert (modem_call["mode"], modem_call["line"], modem_call["call_id"], modem_call["fax_id"]) == \
        ("modem", "modem:ttyNOSUCHMODEM", "", None)
    assert set(st["modems"]) == {"hotplug", "lines"}
    assert set(st["modems"]["lines"][0]) == {"device", "line", "state", "reason", "since", "modem", "class", "quirks",
                                             "rings", "calls", "last_call"}
    assert st["queue"] == dict.fromkeys(JOB_STATES, 0) and st["oldest_waiting"] is None
    assert st["media"] is None and st["restart_needed"] == []


def test_the_spool_status_is_the_queue_as_the_statistics_count_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    try:
        for i, recipients in enumerate((["a@x", "b@x"], ["c@x"])):
            fax = spool.begin_fax(T0 + i)
            write_fax_tiff(demo_pages(1), spool.incoming_path(fax))
            spool.finish_fax(fax.id, T0 + 5 + i, complete=True)
            spool.add_jobs(fax.id, recipients, T0 + 10 + i)
        claimed = spool.claim_due_jobs(T0 + 100, 1)
        st = spool.status()
        assert st["queue"] == queue_counts(spool) and st["oldest_waiting"] == oldest_waiting(spool)
        assert st["queue"]["delivering"] == len(claimed) == 1 and st["queue"]["queued"] == 2
        assert st["oldest_waiting"] is not None and st["oldest_waiting"] >= T0 + 10
    finally:
        spool.close()


def test_an_endpoints_status_counts_the_gates_refusals_and_says_whether_it_runs() -> None:
    gate = CallGate(peer_table([], allow_unknown=False), max_calls=4)
    gate.stats["unknown_refused"] += 2
    sip = SipEndpoint(gate=gate)
    assert not sip.started
    st = sip.status()
    assert st["refused"] == {"unknown_refused": 2} and st["connections"] == 0 and st["listeners"] == []
    assert gate.status() == {"refused": {"unknown_refused": 2}, "max_calls": 4}
    assert sip.ua.status() == {"calls": 0, "transactions": 0, "errors": {}}


def test_a_fresh_clock_has_ticked_nothing() -> None:
    assert MediaClock().status() == {"ticks": 0, "skipped": 0, "early_rounds": 0, "max_work_ms": 0.0, "channels": 0}


def test_the_manager_adds_and_removes_devices() -> None:
    async def never(*a: Any) -> Any:
        raise AssertionError("no call here")

    async def main() -> None:
        m = ModemManager(LineSettings(), [], never, never)
        line = m.add("/dev/ttyA")
        assert m.lines == {"/dev/ttyA": line} and m.add("/dev/ttyA") is line
        assert line.status()["reason"] == "not started", "an unstarted manager starts no line"
        line.state = LineState.RECEIVING
        assert line.in_call
        line.state = LineState.IDLE
        assert await m.remove("/dev/ttyA") is line and m.lines == {}
        assert await m.remove("/dev/ttyA") is None, "a device without a line is gone already"

    asyncio.run(main())

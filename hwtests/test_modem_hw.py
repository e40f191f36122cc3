"""The automated modem scenarios against a real modem (see README.md for the bench).

Same scenarios as tests/modem (probe, a 3-page fax from efax compared pixel by pixel below
efax's header, ECM, a call cut after page 2, a modem pulled mid-call), each skipped with the
reason when the bench lacks what it needs.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from PIL import Image

from appliance.calls.facts import CallFacts
from appliance.calls.modem_line import ModemLine
from appliance.modem.probe import probe
from appliance.modem.quirks import quirks_for
from appliance.modem.serial_port import ModemPort
from tests.modem.test_virtual_line import BODY_FROM, EFAX_HEADER_ROWS, _efax_pages, _rows

from .conftest import Bench
from .receive import receive_one

CALL_TIMEOUT = 600.0


def run(coro, timeout: float):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def outcome(facts: CallFacts) -> dict[str, Any]:
    """The call's outcome without its diagnostics, for the test's output."""
    return {**{k: v for k, v in facts.columns().items() if k != "extra"}, "pages": facts.pages}


def received_pages(path: Path) -> list[list[bytes]]:
    """Rows of every page of the received (multi-page) TIFF."""
    pages = []
    with Image.open(path) as im:
        for n in range(getattr(im, "n_frames", 1)):
            im.seek(n)
            page = im.convert("1")
            w, h = page.size
            data, stride = page.tobytes(), (w + 7) // 8
            pages.append([data[i * stride:(i + 1) * stride] for i in range(h)])
    return pages


def assert_body_equal(sent: Path, got: list[bytes], label: str) -> None:
    """efax puts its header in the top rows: every sent row below BODY_FROM must arrive."""
    s = _rows(sent)
    body = got[BODY_FROM + EFAX_HEADER_ROWS:len(s) + EFAX_HEADER_ROWS]
    bad = [i + BODY_FROM for i, (x, y) in enumerate(zip(s[BODY_FROM:], body)) if x != y]
    assert len(got) >= len(s) + EFAX_HEADER_ROWS - 2, (label, len(s), len(got))
    assert not bad, f"{label}: {len(bad)} rows differ, first {bad[:5]}"


def test_probe_report(bench: Bench, tmp_path: Path) -> None:
    """Proves: the modem answers our probe; prints what it is and the class and quirks we pick,
    and writes the dialogue in tests/modem/dialogues format (commit it to replace a reconstruction)."""
    async def main():
        port = await ModemPort.open(bench.modem, baudrate=bench.speed, flow=bench.flow)  # type: ignore[arg-type]
        try:
            return await probe(port), port.history()
        finally:
            port.close()

    info, history = run(main(), 60)
    quirks = quirks_for(info)
    chosen = info.pick_class()
    out = Path(os.environ.get("FAXBRIDGE_HW_OUT", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    dialogue = out / f"probe-{Path(bench.modem).name}.txt"
    lines = [f"# {info.describe()}: captured by hwtests/test_modem_hw.py::test_probe_report", "> ATZ", "< OK"]
    for cmd, answer in info.raw.items():
        if ";" in cmd:  # the same query asked in another class
            continue
        lines.append(f"> {cmd}")
        refused = answer and (answer[-1] in ("ERROR", "NO CARRIER") or answer[-1].startswith("timeout"))
        lines += [f"< {a}" for a in answer] + ([] if refused else ["< OK"])
    dialogue.write_text("\n".join(lines) + "\n")
    print(f"\nmodem: {info.describe()}\nclasses: {','.join(info.classes)} -> class {chosen}\n"
          f"Class 1 tx {info.tx_rates} rx {info.rx_rates}\nquirks: {quirks.name} ({quirks.source}), "
          f"flags {sorted(quirks.flags)}\nproblems: {info.problems}\ndialogue: {dialogue}\n{history}")
    assert info.classes, "the modem reported no service classes"
    if chosen in ("1", "1.0"):
        assert 96 in info.rx_rates or 145 in info.rx_rates, "Class 1 without V.29/V.17 receive?"


def test_receive_three_pages_from_efax(efax_sender: Bench, tmp_path: Path) -> None:
    """Proves: a real call rings the modem, caller ID (if the line sends it) is read, the class
    driver answers, and all three pages arrive intact below efax's header."""
    bench = efax_sender
    pages = _efax_pages(tmp_path, 3)

    async def send() -> int:
        await asyncio.sleep(1.0)
        proc = await asyncio.create_subprocess_exec(
            "efax", "-d", bench.sender, "-o1", "-t", bench.number, *map(str, pages),
            stdout=open(tmp_path / "efax.log", "w"), stderr=asyncio.subprocess.STDOUT)
        return await proc.wait()

    got = run(receive_one(bench, tmp_path, send, CALL_TIMEOUT), CALL_TIMEOUT + 60)
    log = (tmp_path / "efax.log").read_text()
    assert got.result is not None and got.tiff is not None
    print(f"\ncaller: {got.caller}\nfacts: {outcome(got.result.facts)}")
    assert got.result.complete, (got.result.facts, log[-2000:])
    rows = received_pages(got.tiff)
    assert len(rows) == 3, (len(rows), log[-2000:])
    for n, (sent, page) in enumerate(zip(pages, rows), 1):
        assert_body_equal(sent, page, f"page {n}")


def test_receive_with_ecm(bench: Bench, tmp_path: Path) -> None:
    """Proves: ECM is negotiated and used end to end.  efax cannot send with ECM, so the sender is
    our own Class 1 sender on the second modem, or a fax machine (FAXBRIDGE_HW_HUMAN=1)."""
    sender: Callable[[], Awaitable[Any]] | None = None
    if bench.sender_is_modem and bench.number:
        try:
            from appliance.modem.class1 import Class1Sender
        except ImportError as e:
            pytest.skip(f"no ECM-capable modem sender available: {e}")
        pages = _efax_pages(tmp_path, 1)

        async def send_ecm() -> Any:
            await asyncio.sleep(1.0)
            port = await ModemPort.open(bench.sender, baudrate=bench.speed, flow=bench.flow)  # type: ignore[arg-type]
            try:
                await port.command("ATZ", timeout=5)
                await port.command("AT+FCLASS=1")
                return await Class1Sender(bench.number, pages[0], ecm=True).send(port)
            finally:
                port.close()
        sender = send_ecm
    elif bench.human:
        print(f"\nSend a 1-page fax with ECM on (the default on most machines) to {bench.number or 'the modem'} now.")
    else:
        pytest.skip("needs FAXBRIDGE_HW_SENDER (a second modem) and FAXBRIDGE_HW_NUMBER, or FAXBRIDGE_HW_HUMAN=1")
    got = run(receive_one(bench, tmp_path, sender, CALL_TIMEOUT, ecm=True), CALL_TIMEOUT + 60)
    assert got.result is not None
    assert got.result.complete and got.result.facts.ecm, got.result.facts


def test_fax_machine_sends(human: Bench, tmp_path: Path) -> None:
    """Proves: a real fax machine's call is answered and its pages kept (any number of pages)."""
    print(f"\nSend a fax of 2 or more pages from the fax machine to {human.number or 'the modem'} now "
          f"(waiting {CALL_TIMEOUT:.0f} s).")
    got = run(receive_one(human, tmp_path, None, CALL_TIMEOUT), CALL_TIMEOUT + 60)
    assert got.result is not None and got.tiff is not None
    print(f"facts: {outcome(got.result.facts)}")
    assert got.result.complete and len(received_pages(got.tiff)) >= 1


def test_hangup_after_page_two_keeps_two_pages(human: Bench, tmp_path: Path) -> None:
    """Proves: a call cut after page 2 is recorded as incomplete with pages 1 and 2 intact.
    Needs hands: send 3+ pages, and unplug the sender's phone cord as page 3 starts."""
    print("\nSend a fax of 3 or more pages to the modem; when the sender starts page 3, pull its "
          "phone cord (or hang up the line simulator).")
    got = run(receive_one(human, tmp_path, None, CALL_TIMEOUT), CALL_TIMEOUT + 60)
    assert got.result is not None and got.tiff is not None
    assert not got.result.complete, got.result.facts
    assert len(received_pages(got.tiff)) == 2, got.result.facts


def test_modem_pulled_mid_call_keeps_the_pages(human: Bench, tmp_path: Path) -> None:
    """Proves: pulling the USB modem mid-page ends the call with the pages so far (finish is
    called), and the line is "down" until the modem is back.  Needs hands: send 3+ pages and pull
    the modem's USB plug during page 2; plug it back in within a minute."""
    print("\nSend 3 or more pages to the modem; pull its USB plug during page 2, then plug it back.")
    got = run(receive_one(human, tmp_path, None, CALL_TIMEOUT), CALL_TIMEOUT + 60)
    assert got.result is not None and not got.result.complete
    line: ModemLine | None = got.line
    assert line is not None
    print(f"facts: {got.result.facts.get('result_text')}; line: {line.status()}")

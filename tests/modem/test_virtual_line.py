"""The virtual modem pair: spandsp T.31 behind two ptys, one phone line between them.

Fast tests drive the modems in memory (T31Modem, ModemLine) or through real ptys with a few AT
commands; the ``slow`` ones run Debian's efax on both ends in real time.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from appliance.modem.virtual import LineOptions, VirtualLine
from appliance.spandsp.t31 import CallEvent, Control, ModemLine, T31Modem, noise_amplitude
from tests.provided import provided
from tests.budgets import LOADED

# -- a tiny DTE -------------------------------------------------------------------------------


class Dte:
    """Opens a virtual modem's pty like a fax program does, and talks AT to it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.fd = os.open(os.fspath(path), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.buf = b""

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_until(self, *tokens: bytes, timeout: float = LOADED) -> bytes:
        """Bytes up to and including the first of ``tokens``; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [(self.buf.find(t), t) for t in tokens if t in self.buf]
            if hits:
                pos, tok = min(hits)
                out, self.buf = self.buf[:pos + len(tok)], self.buf[pos + len(tok):]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"none of {tokens} within {timeout} s; got {self.buf!r}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                self.buf += os.read(self.fd, 4096)

    def command(self, cmd: str, *, expect: bytes = b"OK\r\n", timeout: float = LOADED) -> bytes:
        self.send(cmd.encode() + b"\r")
        return self.read_until(expect, b"ERROR\r\n", timeout=timeout)

    def quiet(self, seconds: float) -> bytes:
        """Whatever arrives within ``seconds`` (expected: nothing)."""
        time.sleep(seconds)
        try:
            self.buf += os.read(self.fd, 4096)
        except BlockingIOError:
            pass
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def line(tmp_path: Path):
    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")) as ln:
        yield ln


@pytest.fixture
def dtes(line: VirtualLine, tmp_path: Path):
    a, b = Dte(tmp_path / "ttyA"), Dte(tmp_path / "ttyB")
    assert line.wait_for(lambda ln: ln.a.present and ln.b.present, LOADED)
    for d in (a, b):
        d.command("ATE0")
        d.command("AT+FCLASS=1")
    yield a, b
    for d in (a, b):
        try:
            d.close()
        except OSError:
            pass


def _connect(line: VirtualLine, a: Dte, b: Dte) -> None:
    a.send(b"ATD5551000\r")
    b.read_until(b"RING\r\n")
    b.send(b"ATA\r")
    assert line.wait_for(lambda ln: ln.call is not None and ln.call.answered, LOADED)


# -- in memory: the binding -------------------------------------------------------------------


def test_t31_answers_at_commands_in_memory() -> None:
    m = T31Modem()
    m.at_rx(b"ATE0\r")
    m.take_output()
    m.at_rx(b"AT+FCLASS=?\r")
    assert m.take_output() == b"\r\n0,1,1.0\r\n\r\nOK\r\n"
    m.at_rx(b"ATD5551234\r")
    assert (ev := m.next_event()) is not None and ev.op is Control.CALL and ev.number == "5551234"
    m.close()
    with pytest.raises(RuntimeError):
        m.at_rx(b"AT\r")


def test_caller_id_needs_the_captured_at_state() -> None:
    m = T31Modem()
    assert not m.set_call_info("NMBR", "5550100")  # at_tx has not run yet: no at_state_t
    m.at_rx(b"AT+VCID=1\r")
    m.take_output()
    assert m.set_call_info("NMBR", "5550100")
    m.call_event(CallEvent.ALERTING)
    assert m.take_output() == b"\r\nNMBR=5550100\r\n\r\nRING\r\n"


def _pair() -> tuple[T31Modem, T31Modem]:
    a, b = T31Modem(name="a"), T31Modem(name="b")
    for m in (a, b):
        m.at_rx(b"ATE0\r")
        m.at_rx(b"AT+FCLASS=1\r")
        m.take_output()
    a.at_rx(b"ATD1\r")
    b.call_event(CallEvent.ALERTING)
    b.at_rx(b"ATA\r")
    b.call_event(CallEvent.ANSWERED)
    a.call_event(CallEvent.CONNECTED)
    for m in (a, b):
        m.take_output()
        m.events.clear()
    return a, b


def _run_until(line: ModemLine, modem: T31Modem, token: bytes, seconds: float) -> bytes:
    got = b""
    for _ in range(int(seconds / 0.02)):
        line.step(160)
        got += modem.take_output()
        if token in got:
            return got
    raise AssertionError(f"{token!r} not seen in {seconds} s of audio; got {got!r}")


def _hdlc(a_to_b: tuple[T31Modem, T31Modem], line: ModemLine, frame: bytes) -> bytes:
    """Send one final V.21 HDLC frame from the first modem; what the second modem's DTE gets."""
    tx, rx = a_to_b
    rx.at_rx(b"AT+FRH=3\r")
    tx.at_rx(b"AT+FTH=3\r")
    assert b"CONNECT" in _run_until(line, tx, b"CONNECT", 2)
    tx.at_rx(frame.replace(b"\x10", b"\x10\x10") + b"\x10\x03")
    _run_until(line, tx, b"OK", 5)
    return _run_until(line, rx, b"OK\r\n", 5)


def test_hdlc_frames_cross_the_line_and_pages_are_counted_from_them() -> None:
    a, b = _pair()
    line = ModemLine(a, b)
    _run_until(line, b, b"CONNECT", 6)  # the answerer's CED, then it sends V.21 flags (+FTH=3)
    b.at_rx(b"\xff\x13\x80\x00\x10\x03")  # a final DIS-like frame ends the answerer's first FTH
    _run_until(line, b, b"OK", 5)
    assert b"\xff\x13\x80" in _run_until(line, a, b"OK\r\n", 5)  # the caller was in an implicit +FRH
    got = _hdlc((a, b), line, b"\xff\x13\x4f")  # MPS (X bit set: from the caller)
    assert b"\xff\x13\x4f" in got and got.endswith(b"\x10\x03\r\nOK\r\n")
    assert line.pages == 0  # a post-page command alone is not a page
    got = _hdlc((b, a), line, b"\xff\x13\x8c")  # MCF from the answerer
    assert b"\xff\x13\x8c" in got
    assert line.pages == 1
    assert line.frames >= 3


def test_noise_level_and_bounds() -> None:
    assert noise_amplitude(None) == 0
    assert noise_amplitude(-60) < noise_amplitude(-30) < noise_amplitude(-10)
    a, b = T31Modem(), T31Modem()
    with pytest.raises(ValueError):
        ModemLine(a, b, drop=1.5)
    with pytest.raises(ValueError):
        ModemLine(a, b, delay_ms=2000)
    with pytest.raises(ValueError):
        LineOptions(hangup_after_page=0)


def _frame_through_noise(noise_dbm0: float) -> bytes:
    a, b = _pair()
    line = ModemLine(a, b, noise_dbm0=noise_dbm0, seed=3)
    _run_until(line, b, b"CONNECT", 6)
    b.at_rx(b"\xff\x13\x80\x00\x10\x03")
    _run_until(line, b, b"OK", 5)
    got = b""
    for _ in range(250):
        line.step(160)
        got += a.take_output()
    return got


def test_noise_on_the_line_reaches_the_modems() -> None:
    assert b"\xff\x13\x80" in _frame_through_noise(-45.0)  # quiet line: the frame arrives
    assert b"\xff\x13\x80" not in _frame_through_noise(0.0)  # noise as loud as the signal: lost


def test_link_never_replaces_a_real_file(tmp_path: Path) -> None:
    (tmp_path / "A").write_text("precious")
    with pytest.raises(FileExistsError):
        VirtualLine(str(tmp_path / "A"), str(tmp_path / "B"))
    assert (tmp_path / "A").read_text() == "precious"


def test_dropped_blocks_are_counted() -> None:
    a, b = _pair()
    line = ModemLine(a, b, drop=0.5, seed=7)
    for _ in range(200):
        line.step(160)
    assert 150 < line.dropped_blocks < 250  # 400 blocks (200 steps, both ways), half lost


# -- through real ptys --------------------------------------------------------------------------


def test_at_self_test_through_a_pty(line: VirtualLine, tmp_path: Path) -> None:
    assert os.path.islink(tmp_path / "ttyA")
    assert os.stat(line.a.slave_path).st_mode & 0o666 == 0o666
    d = Dte(tmp_path / "ttyA")
    try:
        assert d.command("AT").endswith(b"OK\r\n")
        assert b"spandsp" in d.command("ATI")
        assert b"0,1,1.0" in d.command("AT+FCLASS=?")
        assert b"24,48,72,73,74,96,97,98,121,122,145,146" in d.command("AT+FTM=?")
        assert b"3" in d.command("AT+FTH=?")
    finally:
        d.close()


def test_dial_rings_the_other_end_with_caller_id_and_ata_connects_both(line: VirtualLine, dtes) -> None:
    a, b = dtes
    b.command("AT+VCID=1")
    a.send(b"ATD5551000\r")
    ring = b.read_until(b"RING\r\n", timeout=LOADED)
    assert b"NMBR=5550100" in ring and b"NDID=5551000" in ring
    assert a.quiet(0.3) == b""  # the caller hears ringback: nothing to say yet
    b.send(b"ATA\r")
    b.read_until(b"CONNECT\r\n", timeout=LOADED)  # about 3 s of CED, then V.21 flags
    a.read_until(b"CONNECT\r\n", timeout=LOADED)  # the caller hears the answerer's flags
    assert line.call is not None and line.call.answered and line.call.rings == 1


def test_ringing_repeats_every_five_seconds_until_the_caller_gives_up(line: VirtualLine, dtes) -> None:
    a, b = dtes
    a.send(b"ATD5551000\r")
    b.read_until(b"RING\r\n", timeout=LOADED)
    t0 = time.monotonic()
    b.read_until(b"RING\r\n", timeout=LOADED)
    assert 4.5 < time.monotonic() - t0 < 6.0
    a.send(b"ATH\r")  # a key pressed aborts the dial; ATH then puts it on hook
    a.read_until(b"OK\r\n", timeout=LOADED)
    assert line.wait_for(lambda ln: ln.call is not None and ln.call.ended is not None, LOADED)
    assert b"RING" not in b.quiet(5.5)


def test_hangup_on_one_side_is_no_carrier_on_the_other(line: VirtualLine, dtes) -> None:
    a, b = dtes
    _connect(line, a, b)
    b.read_until(b"CONNECT\r\n", timeout=LOADED)
    a.read_until(b"CONNECT\r\n", timeout=LOADED)
    b.send(b"\x10\x03")  # end the answerer's FTH
    b.read_until(b"OK\r\n")
    a.read_until(b"OK\r\n", b"ERROR\r\n", b"NO CARRIER\r\n", timeout=LOADED)  # the caller's implicit +FRH ends
    a.quiet(0.3)
    b.command("ATH")
    t0 = time.monotonic()
    a.send(b"AT+FRH=3\r")  # a modem in command state reports the dead line to its next command
    assert b"NO CARRIER" in a.read_until(b"NO CARRIER\r\n", b"OK\r\n", b"ERROR\r\n", timeout=LOADED)
    assert 4.5 < time.monotonic() - t0 < 6.5  # the line lingers 5 s: the last frame still arrives
    assert line.calls[-1].ended_by == "B hangup"


def test_dte_closing_its_port_hangs_up(line: VirtualLine, dtes, tmp_path: Path) -> None:
    a, b = dtes
    _connect(line, a, b)
    b.read_until(b"CONNECT\r\n", timeout=LOADED)
    b.close()
    a.read_until(b"NO CARRIER\r\n", timeout=LOADED)
    assert line.calls[-1].ended_by == "B DTE closed"
    # the port comes back in its power-on state for the next program
    b2 = Dte(tmp_path / "ttyB")
    try:
        assert line.wait_for(lambda ln: ln.b.present, LOADED)
        assert b2.command("AT").endswith(b"OK\r\n")
    finally:
        b2.close()


def test_hangup_after_page_drops_the_call_for_both(tmp_path: Path) -> None:
    opts = LineOptions(hangup_after_page=1)
    with VirtualLine(str(tmp_path / "A"), str(tmp_path / "B"), options=opts) as ln:
        a, b = Dte(tmp_path / "A"), Dte(tmp_path / "B")
        try:
            for d in (a, b):
                d.command("ATE0")
                d.command("AT+FCLASS=1")
            _connect(ln, a, b)
            b.read_until(b"CONNECT\r\n", timeout=LOADED)
            b.send(b"\xff\x13\x80\x00\x10\x03")
            b.read_until(b"OK\r\n")
            a.read_until(b"OK\r\n", timeout=LOADED)  # A heard the frame after its implicit +FRH
            b.send(b"AT+FRH=3\r")
            a.command("AT+FTH=3", expect=b"CONNECT\r\n")
            a.send(b"\xff\x13\x2f\x10\x03")  # EOP
            a.read_until(b"OK\r\n", timeout=LOADED)
            b.read_until(b"OK\r\n", timeout=LOADED)
            a.send(b"AT+FRH=3\r")
            b.command("AT+FTH=3", expect=b"CONNECT\r\n")
            b.send(b"\xff\x13\x8c\x10\x03")  # MCF: one page went through
            a.read_until(b"NO CARRIER\r\n", timeout=LOADED)
            b.read_until(b"NO CARRIER\r\n", timeout=LOADED)
            assert ln.calls[-1].pages == 1
            assert ln.calls[-1].ended_by == "fault: hang-up after page 1"
        finally:
            a.close()
            b.close()


def test_cli_virtual_modem_runs_in_the_foreground(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "virtual-modem", "--link",
                             str(tmp_path / "A"), str(tmp_path / "B")], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert "virtual modem A" in first
        d = Dte(tmp_path / "A")
        try:
            assert d.command("AT").endswith(b"OK\r\n")
        finally:
            d.close()
    finally:
        proc.terminate()
        assert proc.wait(LOADED) == 0
    assert not (tmp_path / "A").exists()


# -- real fax programs ----------------------------------------------------------------------------

EFAX = shutil.which("efax")
#: efax puts its header line in the top rows of every page it sends: compare below it
BODY_FROM = 40
#: rows efax adds above each sent page (measured: received row 20 + i == sent row i for i >= 3)
EFAX_HEADER_ROWS = 20


def _efax_pages(tmp_path: Path, count: int) -> list[Path]:
    """Single-strip G3 one-page TIFFs (what efax 0.9a can read), 1728 wide, fine."""
    from appliance.fax.testpages import demo_pages

    files = []
    for n, im in enumerate(demo_pages(count), 1):
        raw, out = tmp_path / f"raw{n}.tif", tmp_path / f"page{n}.tif"
        im.save(raw, compression="group3", dpi=(204, 196))
        subprocess.run(["tiffcp", "-c", "g3", "-r", "100000", str(raw), str(out)], check=True)
        files.append(out)
    return files


def _rows(path: Path) -> list[bytes]:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("1")
        w, h = im.size
        data = im.tobytes()
    stride = (w + 7) // 8
    return [data[i * stride:(i + 1) * stride] for i in range(h)]


def _efax_call(tmp_path: Path, pages: list[Path], options: LineOptions | None = None):
    """efax sends ``pages`` from port A, efax receives on port B; (tx rc, rx rc, seconds, call, logs)."""
    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB"), options=options) as ln:
        t0 = time.monotonic()
        with open(tmp_path / "rx.log", "w") as rxlog, open(tmp_path / "tx.log", "w") as txlog:
            rx = subprocess.Popen([EFAX, "-d", str(tmp_path / "ttyB"), "-o1", "-r", str(tmp_path / "rx")],
                                  stdout=rxlog, stderr=subprocess.STDOUT)
            assert ln.wait_for(lambda l: l.b.present, LOADED)
            time.sleep(1.5)  # efax initialises the modem, then waits for RING
            tx = subprocess.Popen([EFAX, "-d", str(tmp_path / "ttyA"), "-o1", "-t", "5551000", *map(str, pages)],
                                  stdout=txlog, stderr=subprocess.STDOUT)
            try:
                tx_rc = tx.wait(240)
                rx_rc = rx.wait(60)
            finally:
                for p in (tx, rx):
                    if p.poll() is None:
                        p.kill()
        elapsed = time.monotonic() - t0
        call = ln.calls[-1]
    logs = (tmp_path / "tx.log").read_text() + (tmp_path / "rx.log").read_text()
    return tx_rc, rx_rc, elapsed, call, logs


def _assert_body_equal(sent: Path, got: Path) -> None:
    s, r = _rows(sent), _rows(got)
    # efax prepends EFAX_HEADER_ROWS rows (its header line in the middle of them) and pads ~21
    # rows at the end; below BODY_FROM every sent row must be there, shifted by the header
    assert len(r) >= len(s) + EFAX_HEADER_ROWS, (len(s), len(r))
    body = r[BODY_FROM + EFAX_HEADER_ROWS:len(s) + EFAX_HEADER_ROWS]
    bad = [i + BODY_FROM for i, (x, y) in enumerate(zip(s[BODY_FROM:], body)) if x != y]
    assert not bad, f"{got.name}: {len(bad)} rows differ, first {bad[:5]}"


needs_efax = provided(EFAX is not None and shutil.which("tiffcp") is not None,
                      "needs Debian's efax and libtiff-tools (make test installs them)")


@pytest.mark.slow
@pytest.mark.xdist_group("vmodem")
@needs_efax
def test_efax_sends_two_pages_to_efax_over_the_virtual_line(tmp_path: Path) -> None:
    pages = _efax_pages(tmp_path, 2)
    tx_rc, rx_rc, elapsed, call, logs = _efax_call(tmp_path, pages)
    assert tx_rc == 0 and rx_rc == 0, logs[-3000:]
    assert call.answered and call.pages == 2, call
    received = sorted(tmp_path.glob("rx.0*"))
    assert [p.name[-3:] for p in received] == ["001", "002"], logs[-2000:]
    for sent, got in zip(pages, received):
        _assert_body_equal(sent, got)
    print(f"efax -> efax, 2 pages: {elapsed:.1f} s; sent rows {BODY_FROM}..2155 == received rows "
          f"{BODY_FROM + EFAX_HEADER_ROWS}..{2155 + EFAX_HEADER_ROWS}")


@pytest.mark.slow
@pytest.mark.xdist_group("vmodem")
@needs_efax
def test_line_drops_an_efax_call_after_page_one(tmp_path: Path) -> None:
    pages = _efax_pages(tmp_path, 2)
    tx_rc, rx_rc, elapsed, call, logs = _efax_call(tmp_path, pages, LineOptions(hangup_after_page=1))
    assert call.pages == 1 and call.ended_by == "fault: hang-up after page 1", call
    assert tx_rc != 0, logs[-3000:]  # the sender knows page 2 did not go
    received = sorted(tmp_path.glob("rx.0*"))
    assert [p.name[-3:] for p in received] == ["001"], logs[-2000:]
    _assert_body_equal(pages[0], received[0])
    print(f"efax, line dropped after page 1: {elapsed:.1f} s, sender rc {tx_rc}, receiver rc {rx_rc}")

def test_dte_bytes_wait_in_the_pty_while_the_modem_drops_cts(line: VirtualLine, dtes) -> None:
    a, b = dtes
    _connect(line, a, b)
    b.read_until(b"CONNECT\r\n", timeout=LOADED)
    b.send(b"\xff\x13\x80\x00\x10\x03")
    b.read_until(b"OK\r\n")
    a.read_until(b"OK\r\n", b"ERROR\r\n", b"NO CARRIER\r\n", timeout=LOADED)
    b.send(b"AT+FRM=96\r")
    a.command("AT+FTM=96", expect=b"CONNECT\r\n")  # V.29 9600: 1200 bytes a second
    before = line.a.bytes_from_dte
    blob = b"\x00" * 24000  # 20 s of image data at 9600 bit/s
    sent = 0
    deadline = time.monotonic() + 3
    while sent < len(blob) and time.monotonic() < deadline:
        try:
            sent += os.write(a.fd, blob[sent:sent + 4096])
        except BlockingIOError:
            time.sleep(0.05)
    time.sleep(1.0)
    taken = line.a.bytes_from_dte - before
    # the modem took its buffer's worth plus what 9600 bit/s drained, not everything written
    assert taken < 12000 and sent > taken + 2000, (sent, taken)
    a.send(b"\x10\x03")


def test_fast_mode_runs_the_line_faster_than_real_time(tmp_path: Path) -> None:
    with VirtualLine(str(tmp_path / "A"), str(tmp_path / "B"), options=LineOptions(realtime=False)) as ln:
        a, b = Dte(tmp_path / "A"), Dte(tmp_path / "B")
        try:
            for d in (a, b):
                d.command("ATE0")
                d.command("AT+FCLASS=1")
            t0 = time.monotonic()
            _connect(ln, a, b)
            b.read_until(b"CONNECT\r\n", timeout=LOADED)  # after 3 s of CED on the line
            assert time.monotonic() - t0 < 3.0  # the 3 s of CED alone take 3 s in real time
        finally:
            a.close()
            b.close()

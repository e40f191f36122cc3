"""The Class 2/2.0 receive driver against reconstructed modem dialogues played on a real pty.

Each dialogue (dialogues/class2/*.txt) lists what the driver must send and what the modem says
back; ``<data N ...`` lines are page N of the demo pages, coded by spandsp's T.4 coder and
DLE-stuffed as a modem would.  The received TIFF is compared with the demo pages pixel for pixel.
The session is also fed directly (sans-I/O) for the cases a dialogue cannot express.
"""
from __future__ import annotations

import asyncio
import random
import os
import pty
import tty
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.fax.pages import read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.class2 import Class2Receiver, Class2Session
from appliance.modem.class2_codes import Command, copy_quality, hangup_key, hangup_text, parse_dcs
from appliance.modem.dle import dle_stuff
from appliance.modem.driver import ModemCall
from appliance.modem.serial_port import ModemPort
from appliance.spandsp.t4 import T4_1D, PageStats, T4Transmitter, reverse_bits

DIALOGUES = Path(__file__).parent / "dialogues" / "class2"
IDENT = "FAXBRIDGE"

SETUP = {
    "2.0": [(f'AT+FLI="{IDENT}"', ["OK"]), ("AT+FCR=1", ["OK"]), ("AT+FBO=0", ["OK"]),
            ("AT+FCC?", ["1,5,0,2,0,1,0,0", "OK"]), ("AT+FCC=1,5,0,2,0,0,0,0", ["OK"]),
            ("AT+FNR=1,1,1,0", ["OK"]), ("AT+FIE=0", ["ERROR"])],
    "2": [(f'AT+FLID="{IDENT}"', ["OK"]), ("AT+FCR=1", ["OK"]), ("AT+FBOR=0", ["OK"]),
          ("AT+FDCC?", ["ERROR"])],
}


@dataclass
class Turn:
    cmd: str
    out: bytes = b""


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> tuple[list, list[bytes]]:
    """The demo pages and their MH coding (transmission order)."""
    pages = demo_pages(3)
    src = tmp_path_factory.mktemp("src") / "src.tif"
    write_fax_tiff(pages, src)
    with T4Transmitter(src) as tx:
        data = [tx.encode_page(T4_1D) for _ in pages]
    return pages, data


def load(path: Path, data: list[bytes]) -> tuple[str, list[Turn]]:
    variant = "2.0"
    turns: list[Turn] = []
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@setup "):
            variant = line.split()[1]
            for cmd, answer in SETUP[variant]:
                turns.append(Turn(cmd, b"".join(b"\r\n" + a.encode() + b"\r\n" for a in answer)))
        elif line.startswith("> "):
            turns.append(Turn(line[2:]))
        elif line.startswith("<data "):
            words = line.split()[1:]
            page = data[int(words[0]) - 1]
            if "half" in words:
                page = page[:len(page) // 2]
            if "reversed" in words:
                page = reverse_bits(page)
            turns[-1].out += dle_stuff(page, sub="sub" in words) + b"\x10\x03"
        elif line.startswith("<block "):  # a few stray data bytes, then <DLE><ETX>
            turns[-1].out += line[7:].encode() + b"\x10\x03"
        elif line.startswith("< "):
            turns[-1].out += b"\r\n" + line[2:].encode() + b"\r\n"
        else:
            raise ValueError(f"{path.name}: not a dialogue line: {raw!r}")
    return variant, turns


class DialogueModem:
    """The master side of a pty answering each command with the dialogue's next turn."""

    def __init__(self, turns: list[Turn]) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(self.master)
        self.path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.turns = list(turns)
        self.sent: list[str] = []
        self.mismatch: list[tuple[str, str]] = []
        self.controls = b""
        self._buf = b""
        self._out = b""
        self._writing = False
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            self._buf += os.read(self.master, 4096)
        except OSError:
            return
        while b"\r" in self._buf:
            raw, _, self._buf = self._buf.partition(b"\r")
            at = raw.find(b"AT")
            self.controls += raw[:at] if at >= 0 else raw  # DC2, CAN
            if at < 0:
                continue
            cmd = raw[at:].decode()
            self.sent.append(cmd)
            if not self.turns:
                self.mismatch.append((cmd, "<end of dialogue>"))
                os.write(self.master, b"\r\nERROR\r\n")
                continue
            turn = self.turns.pop(0)
            if turn.cmd != cmd:
                self.mismatch.append((cmd, turn.cmd))
            self._write(turn.out)

    def _write(self, data: bytes) -> None:
        """Queue ``data``; it leaves as the driver reads (pages are bigger than the pty buffer)."""
        self._out += data
        self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            n = os.write(self.master, self._out[:4096]) if self._out else 0
        except BlockingIOError:
            n = 0
        except OSError:
            self._out = b""
            n = 0
        self._out = self._out[n:]
        if self._out and not self._writing:
            loop.add_writer(self.master, self._flush)
            self._writing = True
        elif not self._out and self._writing:
            loop.remove_writer(self.master)
            self._writing = False

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.master)
        if self._writing:
            loop.remove_writer(self.master)
        os.close(self.master)


def _play(tmp_path: Path, name: str, data: list[bytes], quirks: frozenset[str] = frozenset(), limit: float = 60):
    variant, turns = load(DIALOGUES / name, data)
    call = ModemCall(device="pty", line="modem:test", tiff_path=tmp_path / "rx.tif", ident=IDENT, ecm=False,
                     quirks=quirks, max_call_duration=60)

    async def main():
        modem = DialogueModem(turns)
        port = await ModemPort.open(modem.path, flow="none")
        try:
            result = await asyncio.wait_for(Class2Receiver(variant).receive(port, call), limit)
        finally:
            port.close()
            modem.close()
        return result, modem

    return asyncio.run(main())


def _assert_pages(path: Path, pages: list, count: int, half_last: bool = False) -> None:
    got = read_pages(path)
    assert len(got) == count
    for n, (sent, received) in enumerate(zip(pages, got), 1):
        if half_last and n == count:
            assert 0 < received.height < sent.height
            rows = received.height - 10  # the rows that arrived whole are the sent ones
            assert sent.convert("L").crop((0, 0, 1728, rows)).tobytes() == received.crop((0, 0, 1728, rows)).tobytes()
        else:
            assert sent.convert("L").tobytes() == received.tobytes(), f"page {n} differs"


def test_three_pages_class20(tmp_path: Path, coded) -> None:
    pages, data = coded
    result, modem = _play(tmp_path, "mt5634_three_pages.txt", data)
    assert not modem.mismatch and not modem.turns, modem.mismatch
    f = result.facts
    assert result.complete, f.result_text
    assert (f.pages, f.bad_rows, f.result_code, f.bit_rate, f.resolution, f.ecm) == \
        (3, 0, 0, 14400, "204x196", False)
    assert f.remote_ident == "+1 555 0100"
    assert f.result_text.startswith("+FHS:00")
    assert modem.controls.count(b"\x12") == 3  # DC2 after each CONNECT
    assert [p.more["copy_quality"] for p in f.page_stats] == ["MCF"] * 3
    assert f.modem_history is None
    assert set(f.extra_record()) == {"page_stats", "remote_vendor", "remote_model", "hangup_reason", "trace",
                                     "modem_class", "bit_order_reversed"}
    _assert_pages(tmp_path / "rx.tif", pages, 3)


def test_class2_hangup_mid_page_keeps_the_pages(tmp_path: Path, coded) -> None:
    pages, data = coded
    result, modem = _play(tmp_path, "class2_hangup_mid_page.txt", data)
    assert not modem.mismatch, modem.mismatch
    f = result.facts
    assert not result.complete
    assert f.pages == 2 and f.result_code == 0x73 and f.bit_rate == 9600
    assert "T2 timeout" in f.result_text and f.remote_ident == "REMOTE 2"
    stats = f.page_stats
    assert [s.more["partial"] for s in stats] == [False, True] and stats[1].more["copy_quality"] == "RTN"
    assert "AT+FPTS=1" in f.modem_history
    _assert_pages(tmp_path / "rx.tif", pages, 2, half_last=True)


@pytest.mark.parametrize("dialogue,said", [
    # CONNECT to a command that starts no page: the data phase is abandoned, the call goes on
    ("connect_to_quality_command.txt", "! CONNECT to a command that starts no page: data phase abandoned"),
    # the data of an abandoned phase is not taken for the next page
    ("stray_block_after_quality_command.txt", "! 5 bytes of an abandoned data phase dropped"),
])
def test_an_abandoned_data_phase_neither_stalls_the_call_nor_feeds_the_next_page(
        tmp_path: Path, coded, dialogue: str, said: str) -> None:
    pages, data = coded
    result, modem = _play(tmp_path, dialogue, data, limit=20)
    assert not modem.mismatch and not modem.turns, modem.mismatch
    assert result.complete and result.facts.pages == 2, result.facts.result_text
    assert said in result.facts.trace
    _assert_pages(tmp_path / "rx.tif", pages, 2)


def test_connect_as_a_page_result_still_hangs_up(tmp_path: Path, coded) -> None:
    pages, data = coded
    result, modem = _play(tmp_path, "connect_as_page_result.txt", data, limit=20)
    assert not modem.mismatch and not modem.turns, modem.mismatch
    assert modem.sent[-1] == "ATH"
    assert not result.complete and result.facts.pages == 1
    assert "CONNECT and no hang-up report" in result.facts.result_text


def test_reversed_bit_order_dle_sub_and_malformed_lines(tmp_path: Path, coded) -> None:
    pages, data = coded
    result, modem = _play(tmp_path, "rockwell_reversed_malformed.txt", data,
                          quirks=frozenset({"class2_bit_order_reversed"}))
    assert not modem.mismatch, modem.mismatch
    f = result.facts
    assert result.complete, f.result_text
    trace = "\n".join(f.trace)
    assert "malformed +FCS" in trace and "malformed +FPS" in trace and "malformed +FET" in trace
    assert f.remote_ident == "" and f.extra["bit_order_reversed"]
    _assert_pages(tmp_path / "rx.tif", pages, 1)


def test_reversed_bit_order_is_detected_without_the_quirk(tmp_path: Path, coded) -> None:
    pages, data = coded
    result, _ = _play(tmp_path, "rockwell_reversed_malformed.txt", data)
    f = result.facts
    assert result.complete and f.extra["bit_order_reversed"], f.result_text
    assert any("MSB first despite +FBO=0" in line for line in f.trace)
    _assert_pages(tmp_path / "rx.tif", pages, 1)


def test_bit_order_guess(coded) -> None:
    from appliance.modem.class2_codes import looks_reversed

    _, data = coded
    assert looks_reversed(bytes(2048)) is None  # no EOL at all: cannot tell, keep +FBO=0
    assert looks_reversed(random.Random(1).randbytes(2048)) is not True  # noise: no reason to reverse
    for page in data:
        assert looks_reversed(page[:2048]) is False and looks_reversed(reverse_bits(page[:2048])) is True


def test_modem_that_stops_answering_ends_with_history(tmp_path: Path, coded) -> None:
    _, data = coded
    (tmp_path / "d").mkdir()
    dialogue = tmp_path / "d" / "x.txt"
    dialogue.write_text("@setup 2.0\n> ATA\n< +FCO\n< +FCS:1,5,0,2,0,0,0,0\n< OK\n> AT+FDR\n< CONNECT\n")
    variant, turns = load(dialogue, data)
    call = ModemCall(device="pty", line="modem:test", tiff_path=tmp_path / "rx.tif", ident=IDENT, ecm=False)

    async def main():
        modem = DialogueModem(turns)
        port = await ModemPort.open(modem.path, flow="none")
        drv = Class2Receiver(variant)
        drv.data_timeout = 0.5
        try:
            return await drv.receive(port, call)
        finally:
            port.close()
            modem.close()

    result = asyncio.run(main())
    f = result.facts
    assert not result.complete and f.pages == 0 and f.result_code == -1
    assert "no page data" in f.result_text and "AT+FDR" in f.modem_history


def test_unwritable_tiff_is_an_error_before_answering(tmp_path: Path) -> None:
    call = ModemCall(device="x", line="modem:test", tiff_path=tmp_path / "no" / "dir" / "rx.tif", ident=IDENT)
    s = Class2Session(call, "2.0")
    s.start()
    assert s.done and s.next_command() is None and "cannot write" in s.facts(1.0).result_text


# -- the session fed directly -------------------------------------------------------------------


def _session(tmp_path: Path, variant: str = "2.0") -> Class2Session:
    s = Class2Session(ModemCall(device="x", line="modem:t", tiff_path=tmp_path / "rx.tif", ident="ME"), variant)
    s.start()
    while (cmd := s.next_command()) is not None and cmd.kind == "setup":
        s.command_done(cmd, "OK", [])
    assert cmd is not None and cmd.text == "ATA"
    s.command_done(cmd, "OK", ["+FCO", "+FCS:0,3,0,2,0,0,0,0"])
    return s


def test_device_gone_mid_page_keeps_page_one(tmp_path: Path, coded) -> None:
    pages, data = coded
    s = _session(tmp_path)
    for n in (0, 1):
        fdr = s.next_command()
        assert fdr is not None and fdr.text == "AT+FDR"
        s.command_done(fdr, "CONNECT", [])
        assert s.in_data
        s.data(data[n] if n == 0 else data[n][:5000])
        if n == 0:
            s.data_end()
            s.data_result("OK", ["+FPS:1,86C,0,0,0", "+FET:0"])
            assert s.next_command() == Command("AT+FPS=1", 3.0, kind="quality")
    s.device_gone("[Errno 5] Input/output error")
    assert s.done and not s.complete
    f = s.facts(10.0)
    assert f.pages == 2 and f.resolution == "204x98" and f.bit_rate == 9600
    assert "modem gone" in f.result_text
    got = read_pages(tmp_path / "rx.tif")
    assert len(got) == 2 and got[0].height == pages[0].height  # standard: 98 lpi, rows as sent


def test_unsolicited_hangup_between_pages_and_no_carrier(tmp_path: Path) -> None:
    s = _session(tmp_path)
    s.unsolicited("RING")
    s.unsolicited("+FHS:70")
    fdr = s.next_command()
    s.command_done(fdr, "NO CARRIER", [])
    assert s.done and not s.complete and s.facts(1.0).result_code == 0x70
    assert "receive phase B" in s.facts(1.0).result_text


def test_codes_and_params() -> None:
    assert hangup_key("0", False) == "00" and hangup_key("100", False) == "A0" and hangup_key("a2", True) == "A2"
    assert hangup_key("73", False) == "73" and hangup_text("99").startswith("hang-up code 99 (receive phase C")
    assert hangup_text("F5").startswith("unknown")
    for text, hex_reports in (("x", True), ("-8A", True), ("0x8A", True), ("8_A", True), ("-1", False),
                              ("١٠", False), ("256", False)):
        with pytest.raises(ValueError):  # "-8A" and "0x8A" were taken as codes (found by fuzzing)
            hangup_key(text, hex_reports)
    p = parse_dcs("1,5,0,2,3,1,0,0", True)
    assert (p.bit_rate, p.width, p.resolution[2], p.ec) == (14400, 1728, "204x196", 1)
    with pytest.raises(ValueError):
        parse_dcs("1,5,0,2,2,0,0,0", True)  # uncompressed mode: we do not decode it
    with pytest.raises(ValueError):
        parse_dcs("1,5", False)
    good = PageStats(1728, 2000, 10, 3, 204, 196, 1, 0)
    assert copy_quality(good, True) == 1 and copy_quality(good, False) == 2
    assert copy_quality(PageStats(1728, 2000, 300, 3, 204, 196, 1, 0), True) == 2
    assert copy_quality(PageStats(1728, 2000, 30, 25, 204, 196, 1, 0), True) == 2
    with pytest.raises(ValueError):
        Class2Receiver("1.0")


def test_odd_modem_output_reads_as_text_on_the_fax_page(tmp_path: Path) -> None:
    """The trace is shown on the fax page: a modem's garbage as hex, an unknown line in quotes,
    never Python reprs (b'...', '\\x07')."""
    s = _session(tmp_path)
    s.garbage(b"\x00\x07<b>\xff", "no line end")
    s.unsolicited("+FXYZ\x07: 1")  # not a +F report it knows
    s.unsolicited("WHAT\x1b")
    lines = [x for x in s.trace if x.startswith("!")]
    assert "! garbage from the modem (no line end): 00 07 3c 62 3e ff" in lines
    assert '! unexpected line from the modem: "WHAT?"' in lines
    assert not any("b'" in x or "\\x" in x for x in s.trace)

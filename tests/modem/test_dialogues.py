"""Recorded modem dialogues replayed into AtChannel byte by byte and in random chunk sizes."""
from __future__ import annotations

import random

import pytest

from appliance.modem.at import CommandDone, parse_fclass, parse_range_list

from .dialogue import DIALOGUES, expected, load, replay, replay_queued

FILES = sorted(DIALOGUES.glob("*.txt"))


def test_every_dialogue_is_found_and_loads():
    names = {p.stem for p in FILES}
    assert {"spandsp_t31", "usr5637", "zoom3095_conexant", "multitech_mt5634zba", "agere"} <= names
    for path in FILES:
        assert load(path), path


@pytest.mark.parametrize("echo", [False, True], ids=["echo-off", "echo-on"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_replay_byte_by_byte(path, echo):
    channel, results = replay(path, echo=echo)
    for turn, events in results:
        assert events == expected(turn), (turn, channel.history_text())
    assert channel.stats["garbage"] == 0
    assert channel.stats["echo"] == (sum(1 for t, _ in results if t.cmd) if echo else 0)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_replay_random_chunks(path, seed):
    rng = random.Random(seed)
    channel, results = replay(path, echo=bool(seed % 2), rng=rng, max_chunk=17)
    for turn, events in results:
        assert events == expected(turn)


def test_spandsp_quirks_and_capabilities():
    _, results = replay(DIALOGUES / "spandsp_t31.txt")
    done = {e.cmd: e for _, events in results for e in events if isinstance(e, CommandDone)}
    assert parse_fclass(done["AT+FCLASS=?"].lines[0]) == ["0", "1", "1.0"]
    assert parse_range_list(done["AT+FTM=?"].lines[0])[-1] == 146
    assert done["AT+FOO"].result == "OK" and done["AT+GCAP"].ok  # unknown commands: OK
    assert done["AT+FCLASS=2"].result == "ERROR" and not done["AT+FCLASS=2"].ok
    assert done["AT+FCLASS=2.0"].result == "ERROR"


def test_class2_answer_ends_in_data_mode():
    channel, results = replay(DIALOGUES / "multitech_mt5634zba.txt")
    last_turn, events = results[-1]
    assert last_turn.cmd == "AT+FDR" and events[0].result == "CONNECT"
    assert channel.in_data_mode
    ata = next(e for t, evs in results if t.cmd == "ATA" for e in evs)
    assert ata.lines == ["+FCO", "+FCS:0,5,0,2,0,0,0,0"]


def test_loader_rejects_a_response_without_a_command(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("< OK\n")
    with pytest.raises(ValueError, match="no command"):
        load(bad)
    bad.write_text("> AT\nOK\n")
    with pytest.raises(ValueError, match="not a dialogue line"):
        load(bad)


@pytest.mark.parametrize("echo", [False, True], ids=["echo-off", "echo-on"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_replay_with_numeric_result_codes(path, echo):
    """The same dialogues after ATV0: codes end in CR alone, information text in CR LF."""
    channel, results = replay(path, echo=echo, numeric=True)
    assert len(results) >= 4
    for turn, events in results:
        assert events == expected(turn), (turn, channel.history_text())


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_all_commands_queued_up_front_answer_in_fifo_order(path, seed):
    channel, events, want = replay_queued(path, random.Random(seed), echo=bool(seed % 2))
    assert events == want

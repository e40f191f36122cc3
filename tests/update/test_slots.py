"""The slot logic as text: config.txt's os_prefix, tryboot.txt, cmdline.txt, the booted slot and
the boards that have tryboot."""

from __future__ import annotations

import pytest

from appliance.update.slots import (SlotError, Slots, booted_slot, cmdline_for, model_problem, os_prefix_slot,
                                    other, parse_marks, render_marks, with_os_prefix)
from tests.update.conftest import CONFIG_TXT, cmdline


def test_the_committed_slot_is_the_last_os_prefix() -> None:
    assert os_prefix_slot(CONFIG_TXT) == "a"
    assert os_prefix_slot("os_prefix=a/\n[pi4]\nos_prefix=b/  # tried\n") == "b"
    assert os_prefix_slot("  os_prefix = b\n") == "b"
    assert os_prefix_slot("arm_64bit=1\n") is None
    assert os_prefix_slot("#os_prefix=a/\n") is None
    assert os_prefix_slot("os_prefix=../etc/\n") is None


def test_switching_rewrites_every_os_prefix_and_keeps_the_rest() -> None:
    text = with_os_prefix(CONFIG_TXT, "b")
    assert os_prefix_slot(text) == "b" and text.count("os_prefix") == 1
    assert text.replace("os_prefix=b/", "os_prefix=a/") == CONFIG_TXT
    two = with_os_prefix("os_prefix=a/\n[pi4]\nos_prefix=a/\n", "b")
    assert two == "os_prefix=b/\n[pi4]\nos_prefix=b/\n"
    assert with_os_prefix("arm_64bit=1", "a") == "arm_64bit=1\n[all]\nos_prefix=a/\n"
    with pytest.raises(SlotError):
        with_os_prefix(CONFIG_TXT, "c")


def test_the_booted_slot_comes_from_the_kernel_command_line() -> None:
    assert booted_slot(cmdline("a")) == "a" and booted_slot(cmdline("b")) == "b"
    assert booted_slot("root=/dev/vda2 rw") is None
    assert booted_slot("rauc.slot=x") is None
    assert booted_slot("xrauc.slot=b rauc.slot=a") == "a"


def test_a_slots_cmdline_swaps_root_and_rauc_slot_only() -> None:
    assert cmdline_for("b", cmdline("a")) == cmdline("b")
    assert cmdline_for("a", cmdline("b")) == cmdline("a")
    bare = cmdline_for("b", "console=tty0 quiet")
    assert bare == "root=PARTUUID=fa8b0001-03 console=tty0 quiet rauc.slot=b\n"
    assert cmdline_for("a", "root=LABEL=RASPIROOT rw\n") == "root=PARTUUID=fa8b0001-02 rw rauc.slot=a\n"


def test_trial_primary_and_what_stops_an_update() -> None:
    normal = Slots(booted="a", committed="a", tryboot=None)
    assert not normal.on_trial and normal.primary == "a" and normal.problem() == ""
    trying = Slots(booted="b", committed="a", tryboot="b")
    assert trying.on_trial and "still on trial" in trying.problem()
    assert Slots(booted="a", committed="a", tryboot="b").primary == "b"
    assert Slots(booted="a", committed="a", tryboot="b", bad=frozenset("b")).primary == "a"
    assert "names no root slot" in Slots(booted="a", committed=None, tryboot=None).problem()
    assert "rauc.slot" in Slots(booted=None, committed="a", tryboot=None).problem()
    assert any("trial:     yes" in line for line in trying.describe())
    assert other("a") == "b" and other("b") == "a"


def test_marks_round_trip() -> None:
    assert parse_marks(render_marks(frozenset({"b"}))) == {"b"}
    assert parse_marks("a bad\nb good\nc bad\ngarbage\n") == {"a"}


def test_only_a_pi_3_is_refused() -> None:
    said = model_problem("Raspberry Pi 3 Model B Plus Rev 1.3\x00")
    assert "no 'tryboot'" in said and "Raspberry Pi 3 Model B Plus" in said
    assert model_problem("Raspberry Pi 4 Model B Rev 1.5\x00") == ""
    assert model_problem("Raspberry Pi Compute Module 4 Rev 1.0") == ""
    assert model_problem("linux,dummy-virt") == "" and model_problem("") == ""

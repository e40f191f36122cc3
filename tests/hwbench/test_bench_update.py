"""bench.py following an update: upload, install, the reboot, the trial slot, the verdict.

The box is a Raspberry Pi whose firmware switches slots, so this one part runs against a stand-in
for the Pi's shell (``PiShell``): it answers the very commands bench.py sends over ssh, the way
the box does (an upload through ``sudo tee``, RAUC's JSON for ``rauc status``, ssh's exit status
255 while it reboots), and plays one of the outcomes a real box can have."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hwtests import bench
from hwtests.benchreport import Status
from tests.hwbench.test_benchparse import rauc_json

SIGNATURE = 300


class PiShell(bench.Ssh):
    """A Pi 4 with two root slots, on rootfs.0 (0.1.0), committed. After ``faxbridge update`` it
    plays ``outcome``: "commit" (reboots, tries rootfs.1, commits it), "rollback" (tries rootfs.1,
    its health check fails, back on rootfs.0 with rootfs.1 marked bad), "no-tryboot" (reboots
    straight back into rootfs.0, as a firmware without tryboot does), "no-reboot" (installs and
    stays up), "refuse" (exit 1, RAUC's message)."""

    def __init__(self, known_hosts: Path, outcome: str) -> None:
        super().__init__("admin@pi", known_hosts)
        self.outcome = outcome
        self.state: tuple[str, str, dict[str, str]] = ("rootfs.0", "rootfs.0", {"rootfs.0": "good", "rootfs.1": "good"})
        self.versions = {"rootfs.0": "0.1.0", "rootfs.1": ""}
        self.plan: list[tuple[str, str, dict[str, str]] | None] = []
        self.uploads: dict[str, bytes] = {}
        self.commands: list[str] = []

    def run(self, remote: str, timeout: float = 60.0, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        self.commands.append(remote)
        done = lambda code=0, out="", err="": subprocess.CompletedProcess(remote, code, out, err)  # noqa: E731
        if remote == bench.SLOTS_COMMAND:
            if self.plan:
                step = self.plan.pop(0)
                if step is None:
                    return done(255, err="ssh: connect to host pi port 22: Connection refused")
                self.state = step
            booted, primary, good = self.state
            return done(out=rauc_json(booted, primary, good=good, versions=self.versions))
        if remote.startswith("sudo install -d"):
            self.uploads[shlex.split(remote)[-2]] = stdin.read()
            return done()
        if remote == "sudo faxbridge update --status":
            return done(out=f"booted: {self.state[0]}\ncommitted: {self.state[1]}\n")
        if remote.startswith("sudo faxbridge update "):
            if self.outcome == "refuse":
                return done(1, err="signature verification failed: error:1700009E:CMS routines::verification failure")
            self.versions["rootfs.1"] = "0.2.0"
            trial = ("rootfs.1", "rootfs.0", {"rootfs.0": "good", "rootfs.1": ""})
            self.plan = {
                "commit": [None, None, trial, trial, ("rootfs.1", "rootfs.1", {"rootfs.0": "good", "rootfs.1": "good"})],
                "rollback": [None, trial, trial, None, ("rootfs.0", "rootfs.0", {"rootfs.0": "good", "rootfs.1": "bad"})],
                "no-tryboot": [None, None, self.state],
                "no-reboot": [],
            }[self.outcome]
            return done(0 if self.outcome == "no-reboot" else 255, out="installing to rootfs.1 ... done, rebooting")
        if remote.startswith("sudo rm -f "):
            self.uploads.pop(shlex.split(remote)[-1], None)
            return done()
        raise AssertionError(f"bench.py sent a command the box does not know: {remote}")


def bundle_file(path: Path) -> Path:
    """Bytes laid out as a RAUC bundle: a payload, then a CMS signature and its 8-byte size."""
    path.write_bytes(bytes(range(256)) * 40 + b"\x30\x82" + b"\x5a" * (SIGNATURE - 2) + SIGNATURE.to_bytes(8, "big"))
    return path


def bench_for(tmp_path: Path, outcome: str, *extra: str) -> tuple[bench.Bench, PiShell, Path]:
    bundle = bundle_file(tmp_path / "faxbridge-0.2.0-arm64.raucb")
    args = bench.parse_args(["--box", "192.0.2.10", "--no-fax", "--update-timeout", "5", *extra])
    b = bench.Bench(args, out=tmp_path, poll_every=0.0)
    shell = PiShell(tmp_path / "known_hosts", outcome)
    b.ssh = shell
    return b, shell, bundle


def only(b: bench.Bench, name: str) -> tuple[Status, str]:
    [check] = [c for c in b.report.checks if c.name == name]
    return check.status, check.detail


def test_a_good_update_is_followed_through_the_reboot_to_its_commit(tmp_path: Path) -> None:
    b, shell, bundle = bench_for(tmp_path, "commit")
    b.install(bundle, "commit")
    status, detail = only(b, "update-commit")
    assert status is Status.PASS
    assert detail == ("committed rootfs.1 (version 0.2.0): no answer at 0 s, rootfs.1 (trial) at 0 s, "
                      "rootfs.1 (committed) at 0 s")
    assert "sudo faxbridge update /data/bench/faxbridge-0.2.0-arm64.raucb" in shell.commands
    assert shell.uploads == {}  # uploaded whole, then removed from the data partition
    assert b.report.exit_status() == 0


def test_the_upload_is_the_bundle_itself(tmp_path: Path) -> None:
    b, shell, bundle = bench_for(tmp_path, "no-reboot", "--update-timeout", "0")
    kept: dict[str, bytes] = {}
    run = shell.run

    def keep(remote: str, timeout: float = 60.0, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        if remote.startswith("sudo faxbridge update /"):
            kept.update(shell.uploads)
        return run(remote, timeout, stdin)

    shell.run = keep  # type: ignore[method-assign]
    b.install(bundle, "commit")
    assert kept == {"/data/bench/faxbridge-0.2.0-arm64.raucb": bundle.read_bytes()}
    status, detail = only(b, "update-commit")
    assert status is Status.FAIL and "the box did not reboot after the install" in detail


def test_a_broken_bundle_is_followed_until_the_box_is_back_on_its_old_slot(tmp_path: Path) -> None:
    b, _, bundle = bench_for(tmp_path, "rollback")
    b.install(bundle, "rollback")
    status, detail = only(b, "update-rollback")
    assert status is Status.PASS and detail.startswith("rolled back to rootfs.0 (tried, then left rootfs.1)")


@pytest.mark.parametrize("expect, message", [("rollback", "never seen running nor marked bad"),
                                             ("commit", "rolled back to rootfs.0")])
def test_a_box_that_never_tries_the_new_slot_fails_both(tmp_path: Path, expect: str, message: str) -> None:
    b, _, bundle = bench_for(tmp_path, "no-tryboot")
    b.install(bundle, expect)
    status, detail = only(b, f"update-{expect}")
    assert status is Status.FAIL and message in detail
    assert b.report.exit_status() == 1


def test_a_bundle_with_a_broken_signature_must_be_refused(tmp_path: Path) -> None:
    b, shell, bundle = bench_for(tmp_path, "refuse")
    uploaded: dict[str, bytes] = {}
    run = shell.run

    def keep(remote: str, timeout: float = 60.0, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        if remote.startswith("sudo faxbridge update /"):
            uploaded.update(shell.uploads)
        return run(remote, timeout, stdin)

    shell.run = keep  # type: ignore[method-assign]
    b.bad_signature(bundle)
    status, detail = only(b, "update-bad-signature")
    assert status is Status.PASS and "refused (exit 1): signature verification failed" in detail
    [(path, sent)] = uploaded.items()
    assert path == "/data/bench/faxbridge-0.2.0-arm64-bad-signature.raucb"
    good = bundle.read_bytes()
    changed = [i for i, (x, y) in enumerate(zip(good, sent)) if x != y]
    assert len(sent) == len(good) and changed == [len(good) - 8 - 1]  # the signature's last byte


def test_a_box_that_takes_a_broken_signature_fails(tmp_path: Path) -> None:
    b, _, bundle = bench_for(tmp_path, "commit")
    b.bad_signature(bundle)
    status, detail = only(b, "update-bad-signature")
    assert status is Status.FAIL and detail.startswith("accepted (exit 255)")

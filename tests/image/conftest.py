"""The appliance image, built from this tree and booted under QEMU on a LAN of the test's own.

``built_image`` runs `image/build.sh` (what `make image` runs, without compressing) into
build/image-test, with the base root file system cached in $FAXBRIDGE_IMAGE_CACHE or
build/image-cache (a clean clone builds it: about 10 minutes). ``lan`` is a network namespace with
a tap device that this process steps into; ``box`` is a copy of the image, 2 GiB larger (the
data partition must grow into it), with faxbridge.txt edited as an owner would (a fixed address,
SSH with a key), in a QEMU machine started by tests/image/pifirmware.py.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.image.netns import GuestLan
from tests.image.pifirmware import Machine, fat_read, fat_write

ROOT = Path(__file__).resolve().parents[2]
#: a boot under software emulation reaches the web page in 60-90 s on two cores; the suite's other
#: workers share them
BOOT_TIMEOUT = 420.0


@dataclass
class BuiltImage:
    image: Path
    bundle: Path
    root_ext4: Path
    version: str
    build_log: str
    cache: Path


def _as_root(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() == 0 else ["sudo", "-n", "--preserve-env=PYTHON,IMAGE_COMPRESS", *cmd]


@pytest.fixture(scope="session")
def built_image() -> BuiltImage:
    out = ROOT / "build" / "image-test"
    cache = Path(os.environ.get("FAXBRIDGE_IMAGE_CACHE", ROOT / "build" / "image-cache"))
    env = {**os.environ, "IMAGE_COMPRESS": "0", "PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    start = time.monotonic()
    run = subprocess.run(_as_root([str(ROOT / "image" / "build.sh"), str(out), str(cache)]), env=env,
                         capture_output=True, text=True)
    log = run.stderr + f"\nbuild.sh took {time.monotonic() - start:.0f} s\n"
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "image-build.log").write_text(log)
    assert run.returncode == 0, f"image/build.sh failed:\n{log[-6000:]}"
    image = Path(run.stdout.strip().splitlines()[-1])
    name = image.name.removesuffix(".img")
    return BuiltImage(image, image.with_name(f"{name}.raucb"), image.with_name(f"{name}.root.ext4"),
                      name.removeprefix("faxbridge-").removesuffix("-arm64"), log, cache)


class Mailbox:
    """aiosmtpd's handler: keeps what it accepted; ``hold`` makes DATA wait (a delivery in flight)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.lock = threading.Lock()
        self.hold = threading.Event()
        self.holding = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        import asyncio

        if self.hold.is_set():
            # the box has sent the whole message and waits for the answer when its power goes; a
            # killed guest sends no FIN, so this session never learns it: it ends unaccepted,
            # as the power cut left it (a server that had committed it would make a duplicate
            # no client can prevent: RFC 1047)
            self.holding.set()
            while self.hold.is_set():
                await asyncio.sleep(0.2)
            return "451 4.3.0 not accepted: this session outlived its client"
        with self.lock:
            self.messages.append(envelope.original_content)
        return "250 2.0.0 Ok: queued"

    def parsed(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return [email.message_from_bytes(m, policy=email.policy.default) for m in self.messages]  # type: ignore[misc]

    def wait_for(self, count: int, timeout: float) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.parsed()) >= count:
                return self.parsed()
            time.sleep(0.5)
        raise AssertionError(f"expected {count} mail(s), got {len(self.parsed())} in {timeout} s")


@pytest.fixture(scope="module")
def lan() -> Iterator[GuestLan]:
    for stale in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        if stale.startswith("fbimg") and stale[5:].isdigit() and not Path(f"/proc/{stale[5:]}").exists():
            GuestLan(stale).delete()  # a run that was killed could not clean up
    net = GuestLan(f"fbimg{os.getpid()}")
    net.delete()
    net.create()
    net.enter()
    try:
        yield net
    finally:
        net.leave()
        net.delete()


@dataclass
class MailServer:
    """The owner's Exchange server on the LAN, as the box sees it: port 25, STARTTLS with a
    certificate from the site's own CA (``ca_pem``, which the owner gives the box)."""

    mailbox: Mailbox
    host: str
    port: int
    ca_pem: bytes


@pytest.fixture(scope="module")
def smtp(lan: GuestLan) -> Iterator[MailServer]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert(lan.host_addr, "mx.faxbridge.test")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(tls)
    handler = Mailbox()
    controller = Controller(handler, hostname=lan.host_addr, port=25, server_hostname="mx.faxbridge.test",
                            tls_context=tls, ready_timeout=30)
    controller.start()
    yield MailServer(handler, lan.host_addr, 25, ca.cert_pem.bytes())
    handler.hold.clear()
    controller.stop()


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "owner@bench", "-f", str(key)], check=True)
    return key


@dataclass
class Box:
    machine: Machine
    lan: GuestLan
    key: Path
    built: BuiltImage
    password: str = "the owner's own passphrase 2026"
    setup_code: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://{self.lan.guest_addr}"

    def ssh(self, command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o",
                              "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=15",
                              "-o", "BatchMode=yes", f"admin@{self.lan.guest_addr}", command],
                             capture_output=True, text=True, timeout=timeout)
        if check:
            assert out.returncode == 0, f"ssh {command!r}: {out.returncode}\n{out.stdout}\n{out.stderr}"
        return out

    def scp(self, src: Path, dest: str, timeout: float = 300) -> None:
        subprocess.run(["scp", "-q", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o",
                        "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", str(src),
                        f"admin@{self.lan.guest_addr}:{dest}"], check=True, timeout=timeout)

    def host_key(self) -> str:
        out = subprocess.run(["ssh-keyscan", "-T", "15", "-t", "ed25519", self.lan.guest_addr],
                             capture_output=True, text=True, timeout=60)
        keys = [line.split(None, 1)[1] for line in out.stdout.splitlines() if line and not line.startswith("#")]
        assert keys, f"no SSH host key from the box: {out.stderr}"
        return keys[0]

    def get(self, path: str, timeout: float = 30) -> tuple[int, bytes]:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(self.url + path, context=ctx, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def boot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Power on and wait until the web page answers; returns the seconds it took."""
        start = time.monotonic()
        self.machine.power_on()
        deadline = start + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/healthz", timeout=5)[0] in (200, 503):
                    took = time.monotonic() - start
                    b = self.machine.boots[-1]
                    self.notes[f"boot {len(self.machine.boots)} ({b.config_file}, slot {b.os_prefix}) to the web page"] = \
                        f"{took:.0f} s"
                    return took
            except OSError:
                pass
            if self.machine.proc is not None and self.machine.proc.poll() is not None:
                break
            time.sleep(2)
        raise AssertionError(f"the web page did not answer in {timeout} s; console:\n{self.machine.console()[-5000:]}")

    def shutdown(self) -> None:
        self.ssh("sudo systemctl poweroff", check=False)
        self.machine.wait_off(180)


@pytest.fixture(scope="module")
def box(built_image: BuiltImage, lan: GuestLan, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Box]:
    work = tmp_path_factory.mktemp("box")
    image = work / "card.img"
    subprocess.run(["cp", "--sparse=always", str(built_image.image), str(image)], check=True)
    with open(image, "r+b") as f:  # a bigger card than the image: the data partition grows into it
        f.truncate(image.stat().st_size + 2048 * 1024 * 1024)
    txt = fat_read(image, "faxbridge.txt")
    assert txt is not None, "the image has no faxbridge.txt on its boot partition"
    edits = {"hostname": "faxbridge-ci", "timezone": "Europe/Berlin", "address": f"{lan.guest_addr}/24",
             "ssh": "on", "ssh_authorized_key": (ssh_key.with_suffix(".pub")).read_text().strip()}
    lines = []
    for line in txt.decode().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {edits[key]}" if "=" in line and not line.startswith("#") and key in edits else line)
    fat_write(image, "faxbridge.txt", ("\n".join(lines) + "\n").encode(), work)
    machine = Machine(image, work, lan.tap)
    b = Box(machine, lan, ssh_key, built_image)
    yield b
    machine.power_cut()
    if machine.serial:
        shutil.copy(machine.serial, ROOT / "test-artifacts" / "image-last-console.log")
    figures = "".join(f"{k}: {v}\n" for k, v in b.notes.items() if k != "host key")
    (ROOT / "test-artifacts" / "image-figures.txt").write_text(built_image.build_log.splitlines()[-1] + "\n" + figures)

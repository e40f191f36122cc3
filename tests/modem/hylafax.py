"""HylaFAX's faxsend as the sending far end of a Class 1 modem port (Debian's hylafax-server).

``hylafax_send`` runs one HylaFAX transmit job against any Class 1 modem device without faxq,
hfaxd or the system's /var/spool/hylafax: it lays out a private spool under ``tmp`` (etc/ with a
Class 1 modem config, sendq/ with a hand-written job description file, docq/ with the TIFF/F),
and runs ``faxsend -m <devid> sendq/q1`` in it, which is exactly what faxq does for each attempt
(faxsend(8): "assumes that its current working directory is the top of the spooling hierarchy").

What HylaFAX needs, and how it is met here:

- A device ID, not a path: faxsend turns the ID back into a path by replacing every ``_`` with
  ``/`` (and prefixing /dev/ unless it starts with ``/``).  A path with an underscore in it (every
  pytest tmp_path has some) cannot be named, so the device is reached through a symlink in a
  fresh underscore-free directory under /tmp, removed afterwards.  No /dev entry is needed.
- The config file ``etc/config.<devid>``: Class 1, no reset commands (the spandsp T.31 modem
  starts in a sane state), XON/XOFF flow control (what the faxgetty receive run in fax.md used;
  spandsp 0.0.6 sends no XOFF, the pty's back-pressure does the pacing), no tag line (HylaFAX
  images a tag line only with a ``TagLineFont``: none is set, so the page goes out unchanged).
- The job file: faxq normally computes ``pagehandling`` (per page: two hex digits of session
  parameters, then S/M/P for MPS/EOM/EOP) before the call; it is computed here from the TIFF.
- TIFF/F: fill order either way, but min-is-white.  faxsend sends the strips' G3 bits as they
  are, whatever the Photometric tag says: Pillow's own G3 TIFFs are min-is-black and arrived as
  negatives (seen in the first run).  ``write_tiff_f`` writes min-is-white G3 through PBM and
  libtiff's ppm2tiff.
- ``faxsend -p``: as root, faxsend would switch itself to SCHED_FIFO while sending; on a shared
  2-core CI machine a test must not, so it keeps the normal priority.

faxsend's exit status is the job's FaxSendStatus: 2 (``SEND_DONE``) is success, 0 retry, 1
failed.  The returned log is faxsend's output followed by its session log (log/c*), which has
every AT command, every HDLC frame (DIS/DCS, with the ECM bit) and the page results.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from PIL import Image, ImageSequence

from tests.budgets import LOADED

#: Debian's hylafax-server puts the real programs here; /usr/sbin/faxsend is a wrapper that
#: bind-mounts /etc/hylafax over /var/spool/hylafax/etc first (needs mount rights, and would touch
#: the system spool), so it is not used
FAXSEND_CANDIDATES = ("/usr/lib/hylafax/bin/faxsend", "/usr/libexec/hylafax/faxsend")
FAXGETTY = "/usr/sbin/faxgetty"
SEND_RETRY, SEND_FAILED, SEND_DONE = 0, 1, 2
#: job states in a q-file (sendq(5))
JOB_DONE, JOB_FAILED = 7, 8

#: Class2Params codes (libhylafax class2.h)
_LN_INF = 2
_DF = {"1D": 0, "2D": 1, "MMR": 3}


def faxsend_path() -> str | None:
    """The faxsend binary, or None when HylaFAX is not installed."""
    for p in FAXSEND_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return None


def missing_tools() -> list[str]:
    """What ``hylafax_send``/``write_tiff_f`` need that this machine lacks (empty: all there)."""
    need = [] if faxsend_path() and os.access(FAXGETTY, os.X_OK) else ["hylafax-server (faxsend, faxgetty)"]
    need += [f"libtiff-tools ({t})" for t in ("ppm2tiff", "tiffcp", "tiffset") if shutil.which(t) is None]
    return need


def write_tiff_f(pages: list[Image.Image], dst: Path, dpi: tuple[int, int] = (204, 196)) -> Path:
    """A multi-page TIFF/F (1-D G3, min-is-white, one strip a page) of 1728-wide 1-bit pages."""
    work = dst.parent / (dst.name + ".parts")
    work.mkdir(parents=True, exist_ok=True)
    parts = []
    for n, page in enumerate(pages, 1):
        pbm, tif = work / f"p{n}.pbm", work / f"p{n}.tif"
        page.convert("1").save(pbm)  # PBM: 1 is black, which ppm2tiff writes as min-is-white
        subprocess.run(["ppm2tiff", "-c", "g3", "-r", "100000", "-R", str(dpi[0]), str(pbm), str(tif)],
                       check=True, capture_output=True)
        subprocess.run(["tiffset", "-s", "283", str(dpi[1]), str(tif)], check=True, capture_output=True)
        parts.append(str(tif))
    subprocess.run(["tiffcp", *parts, str(dst)], check=True, capture_output=True)
    shutil.rmtree(work)
    return dst


def page_handling(tiff: Path) -> str:
    """faxq's ``pagehandling`` string for ``tiff``: per page its session parameters, then S/M/P."""
    codes = []
    with Image.open(tiff) as im:
        for frame in ImageSequence.Iterator(im):
            tags = frame.tag_v2
            compression = tags.get(259, 3)
            if compression == 4:
                df = _DF["MMR"]
            else:
                df = _DF["2D"] if int(tags.get(292, 0)) & 1 else _DF["1D"]
            yres = float(tags.get(283, 196))
            if tags.get(296, 2) == 3:  # resolution in cm
                yres *= 2.54
            vr = 1 if yres > 150 else 0
            wd = 0  # A4, 1728 pixels: the only width these tests send
            codes.append(f"{(vr & 1) | (wd << 1) | (_LN_INF << 4) | (df << 6):02x}")
    out = codes[0]
    for prev, cur in zip(codes, codes[1:]):
        out += ("S" if prev == cur else "M") + cur
    return out + "P"


def _devid_link(device: str) -> tuple[Path, str]:
    """A symlink to ``device`` in a new underscore-free directory; (directory, faxsend device ID)."""
    for _ in range(10):
        d = Path(f"/tmp/hylafax-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            d.mkdir(mode=0o755)
            break
        except FileExistsError:
            continue
    else:
        raise RuntimeError("no free directory for the device link")
    link = d / "modem"
    os.symlink(os.path.realpath(device), link)
    return d, str(link).replace("/", "_")


def _config(ecm: bool, extra: dict[str, str] | None) -> str:
    items = {
        "ModemType": "Class1",
        "FAXNumber": "+1.555.555.0100",
        "LocalIdentifier": '"Faxbridge HylaFAX"',
        "CountryCode": "1",
        "AreaCode": "555",
        "LongDistancePrefix": "1",
        "InternationalPrefix": "011",
        "ModemRate": "19200",
        "ModemFlowControl": "xonxoff",
        "ModemResetCmds": '""',
        "ModemReadyCmds": '""',
        "ModemDialCmd": "ATDT%s",
        # the Class 1 prototype (config/class1) and the iaxmodem template's connect delay
        "Class1Cmd": "AT+FCLASS=1",
        "Class1PPMWaitCmd": "AT+FTS=7",
        "Class1TCFWaitCmd": "AT+FTS=7",
        "Class1EOPWaitCmd": "AT+FTS=9",
        "Class1SwitchingCmd": "AT+FRS=7",
        "Class1RecvAbortOK": "200",
        "Class1FrameOverhead": "4",
        "Class1RecvIdentTimer": "40000",
        "Class1TCFMaxNonZero": "10",
        "Class1TCFMinRun": "1000",
        "Class1TMConnectDelay": "400",
        "Class1ECMSupport": "yes" if ecm else "no",
        "SessionTracing": "0xFFF",
        "ServerTracing": "0x1",
        "LogFileMode": "0644",
        "TagLineFont": '""',  # no font: no tag line, the page goes out as it is
    }
    items.update(extra or {})
    return "".join(f"{k}:\t{v}\n" for k, v in items.items())


def _job(devid: str, number: str, pages: int, handling: str, ecm: bool) -> str:
    return "".join(f"{k}:{v}\n" for k, v in {
        "state": 6, "jobid": 1, "groupid": 1, "jobtype": "facsimile",
        "number": number, "external": number,
        "sender": "Faxbridge test", "mailaddr": "root@localhost", "owner": "root", "client": "localhost",
        "modem": devid, "totpages": pages, "npages": 0,
        "pagewidth": 215, "pagelength": 279, "resolution": 196,
        "desiredbr": 5,  # up to 14400 (V.17)
        "desiredec": 2 if ecm else 0,  # 2: 256-byte ECM frames
        "desireddf": 0, "desiredst": 0, "desiredtl": 0, "minbr": 0,
        "maxdials": 1, "maxtries": 1, "notify": "none", "pagechop": "none", "doneop": "remove",
        "pagehandling": handling,
        "fax": "0::docq/doc1.tif",
    }.items())


def hylafax_send(device: str, number: str, tiff: Path, ecm: bool, tmp: Path, timeout: float = 300.0,
                 *, config: dict[str, str] | None = None) -> tuple[int, str]:
    """Send ``tiff`` (a TIFF/F, e.g. from ``write_tiff_f``) with HylaFAX's faxsend through the Class 1
    modem at ``device``, dialling ``number``; a private spool under ``tmp``.

    Returns (faxsend's exit status: ``SEND_DONE`` on success; -9 if killed at ``timeout``, the log).
    ``config`` adds or overrides modem config parameters (hylafax-config(5)).
    """
    faxsend = faxsend_path()
    if faxsend is None:
        raise FileNotFoundError("HylaFAX's faxsend is not installed (Debian: hylafax-server)")
    spool = tmp / "hylafax-spool"
    for d in ("etc", "log", "status", "info", "docq", "sendq", "tmp", "client", "recvq", "doneq",
              "archive", "pollq"):
        (spool / d).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiff, spool / "docq" / "doc1.tif")
    with Image.open(tiff) as im:
        npages = getattr(im, "n_frames", 1)
    linkdir, devid = _devid_link(device)
    try:
        (spool / "etc" / f"config.{devid}").write_text(_config(ecm, config))
        (spool / "sendq" / "q1").write_text(_job(devid, number, npages, page_handling(tiff), ecm))
        proc = subprocess.Popen([faxsend, "-p", "-m", devid, "sendq/q1"], cwd=spool,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGTERM would make faxsend abort politely; a test that timed out wants it gone
            out, _ = proc.communicate()
            rc = -9
    finally:
        shutil.rmtree(linkdir, ignore_errors=True)
    logs = [out]
    for f in sorted((spool / "log").glob("c*")):
        logs.append(f"--- {f.name}\n{f.read_text(errors='replace')}")
    q = spool / "sendq" / "q1"
    if q.exists():
        logs.append("--- sendq/q1 after the attempt\n" + q.read_text(errors="replace"))
    return rc, "\n".join(logs)


def _free_loopback_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _qstate(q: Path) -> int | None:
    for line in q.read_text(errors="replace").splitlines():
        if line.startswith("state:"):
            return int(line.split(":", 1)[1])
    return None


def hylafax_sendfax(device: str, number: str, tiff: Path, tmp: Path, timeout: float = 300.0,
                    *, fine: bool = True, ecm: bool = False) -> tuple[int, str]:
    """The whole HylaFAX send path: ``sendfax`` (the client) hands ``tiff`` to ``hfaxd`` on
    127.0.0.1, ``faxq`` schedules it, converts it (bin/tiff2fax) and runs ``faxsend`` on the modem
    at ``device``.  A private server (spool, daemons) lives for this one job.

    Returns (the job's final state: 7 done, 8 failed, -1 not finished within ``timeout``; logs).
    The spool is a copy of Debian's /var/spool/hylafax (bin/, config/: only read) with
    /etc/hylafax as etc/; the daemons switch to the fax user (uucp), so it lives in a fresh /tmp
    directory, not under ``tmp`` (pytest's are 0700): its logs and job files are copied into
    ``tmp`` and it is removed.  faxq and hfaxd are stopped before this returns.
    """
    lib = Path(faxsend_path() or "/usr/lib/hylafax/bin/faxsend").parent
    for prog in ("/usr/sbin/faxq", "/usr/sbin/hfaxd", shutil.which("sendfax"), str(lib / "faxmodem")):
        if not prog or not os.access(prog, os.X_OK):
            raise FileNotFoundError(f"HylaFAX's {prog or 'sendfax'} is not installed (Debian: hylafax-server)")
    base, devid = _devid_link(device)
    spool = base / "spool"
    shutil.copytree("/var/spool/hylafax", spool, symlinks=True)  # bin/ (tiff2fax, notify, ...), config/
    shutil.rmtree(spool / "etc")  # Debian keeps it empty and bind-mounts /etc/hylafax over it
    shutil.copytree("/etc/hylafax", spool / "etc", symlinks=True)
    (spool / "etc" / "hosts.hfaxd").write_text("127.0.0.1:0::\nlocalhost:0::\n")
    (spool / "bin" / "notify").write_text("#!/bin/sh\nexit 0\n")  # no mail about the job
    (spool / "etc" / f"config.{devid}").write_text(_config(ecm, None))
    (spool / "etc" / "config").write_text(  # faxq's own configuration
        "LogFacility:\tdaemon\nCountryCode:\t1\nAreaCode:\t555\nLongDistancePrefix:\t1\n"
        "InternationalPrefix:\t011\nDialStringRules:\tetc/dialrules\n"
        f"SendFaxCmd:\t{lib / 'faxsend'} -p\n")  # not /usr/sbin/faxsend: Debian's mount wrapper
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "uucp:uucp", str(base)], check=False)
    port = _free_loopback_port()
    host = f"127.0.0.1:{port}"
    out = open(tmp / "hylafax-daemons.log", "w")
    procs = []
    logs: list[str] = []
    state = -1
    try:
        procs.append(subprocess.Popen(["/usr/sbin/faxq", "-D", "-q", str(spool)], stdout=out,
                                      stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen(["/usr/sbin/hfaxd", "-d", "-q", str(spool), "-l", "127.0.0.1",
                                       "-i", str(port)], stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + LOADED
        while not (spool / "FIFO").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        r = subprocess.run([str(lib / "faxmodem"), "-q", str(spool), devid], capture_output=True, text=True)
        logs.append(f"faxmodem rc {r.returncode} {r.stdout}{r.stderr}")
        args = ["sendfax", "-n", "-N", "-h", host, "-d", number, str(tiff)]
        if fine:
            args.insert(1, "-m")
        listening_by = time.monotonic() + LOADED  # hfaxd may not listen yet
        while True:
            r = subprocess.run(args, capture_output=True, text=True, timeout=60)
            refused = "Connection refused" in r.stdout + r.stderr
            if r.returncode == 0 or not refused or time.monotonic() > listening_by:
                break
            time.sleep(0.5)
        logs.append(f"sendfax rc {r.returncode}: {r.stdout}{r.stderr}")
        if r.returncode == 0:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = sorted((spool / "doneq").glob("q*"))
                if done:
                    state = _qstate(done[0]) or -1
                    break
                time.sleep(1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        out.close()
        for f in sorted((spool / "log").glob("c*")) + sorted((spool / "doneq").glob("q*")) + \
                sorted((spool / "sendq").glob("q*")):
            text = f.read_text(errors="replace")
            logs.append(f"--- {f.parent.name}/{f.name}\n{text}")
            (tmp / f"hylafax-{f.parent.name}-{f.name}").write_text(text)
        shutil.rmtree(base, ignore_errors=True)
    return state, "\n".join(logs)


class HylafaxReceiver:
    """HylaFAX's faxgetty answering the Class 1 modem at ``device`` and storing what it receives in
    a private spool: the receiving far end of our sending tests.

    faxgetty switches to the fax user (uucp) before it makes its FIFO, so the spool lives in a
    fresh /tmp directory owned by that user (pytest's directories are 0700 root: faxgetty then
    exits 255 with nothing but a syslog line, and a test machine has no syslog). The device is
    reached through an underscore-free link as for faxsend. ``FaxRcvdCmd`` is /bin/true: no
    notification mail. Use as a context manager; ``received()`` waits for the stored fax.
    """

    def __init__(self, device: str, *, ecm: bool = True) -> None:
        import pwd

        self.base, self.devid = _devid_link(device)
        self.spool = self.base / "spool"
        for d in ("etc", "log", "status", "info", "tmp", "client", "recvq", "dev"):
            (self.spool / d).mkdir(parents=True, exist_ok=True)
        extra = {"RingsBeforeAnswer": "1", "FaxRcvdCmd": "/bin/true", "RecvFileMode": "0644",
                 "LogFileMode": "0644"}
        (self.spool / "etc" / f"config.{self.devid}").write_text(_config(ecm, extra))
        fax_user = pwd.getpwnam("uucp")
        for p in [self.spool, *self.spool.rglob("*")]:
            os.chown(p, fax_user.pw_uid, fax_user.pw_gid)
        self.proc: subprocess.Popen[str] | None = None

    def status(self) -> str:
        try:
            return (self.spool / "status" / self.devid).read_text(errors="replace").strip()
        except OSError:
            return ""

    def __enter__(self) -> HylafaxReceiver:
        link = str(self.base / "modem")
        self.proc = subprocess.Popen([FAXGETTY, "-p", "-q", str(self.spool), link], cwd=self.spool,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + LOADED
        while "idle" not in self.status():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"faxgetty did not become idle: {self.status()!r}, exit {self.proc.returncode}")
            time.sleep(0.2)
        return self

    def received(self, timeout: float = 120.0) -> list[Path]:
        """The received fax files, once faxgetty is idle again after storing one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            faxes = sorted((self.spool / "recvq").glob("fax*.tif"))
            if faxes and "idle" in self.status():
                return faxes
            time.sleep(0.3)
        return sorted((self.spool / "recvq").glob("fax*.tif"))

    def log(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')}" for f in sorted((self.spool / "log").glob("c*")))

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)

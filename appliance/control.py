"""The daemon's control socket: one JSON object per line each way (decision 0009).

The web process runs apart from the daemon (decision 0003) and asks it for live state and actions
through this Unix socket: ``status``, ``wake``, ``reload``, ``probe-modem``, ``test-fax``,
``test-fax-status``, ``restart-needed`` and ``restart``.  Every reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``; a malformed or oversized request gets such an error and never
disturbs the server (or a call: nothing here blocks the event loop; spool reads go to the executor).

The socket is mode 0600 in a directory the service user owns: whoever can connect can restart the
daemon, so only the service user (the web process runs as it) may.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from appliance.calls.facts import CallProgress
from appliance.rtsched import worker_this_thread
from appliance.sip.policy import SELF_TEST_ENV

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.media.channel import MediaChannel
    from appliance.media.clock import MediaClock
    from appliance.media.totals import MediaTotals
    from appliance.modem.manager import ModemManager
    from appliance.sip.events import Local
    from appliance.sip.policy import SelfTestPass
    from appliance.sip.transport import SipStatus
    from appliance.spool.store import FaxRecord, Spool

log = logging.getLogger("faxbridge.control")

#: a request is a small JSON object; anything longer is refused (and the connection closed)
MAX_REQUEST = 64 * 1024
#: a reply can carry a status with many lines and calls; the client refuses more than this
MAX_REPLY = 4 * 1024 * 1024
#: sun_path is 108 bytes on Linux, including the terminating NUL
MAX_SOCKET_PATH = 107
PROBE_TIMEOUT = 20.0
#: a one-page test fax takes 20-40 s; beyond this the sender is stopped
TEST_FAX_TIMEOUT = 180.0
#: test-fax results kept for test-fax-status
TEST_FAX_KEEP = 20
#: a restart is done after the reply has left
RESTART_DELAY = 0.3

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def version() -> str:
    """The installed package's version, or "unknown" in a source tree without metadata."""
    try:
        from importlib.metadata import version as _v

        return _v("faxbridge")
    except Exception:  # noqa: BLE001 - PackageNotFoundError, or broken metadata: never fail a status for it
        return "unknown"


class ControlError(Exception):
    """The daemon answered something that is not a reply (or nothing in time)."""


class DaemonUnavailable(ControlError):
    """The daemon is not running (no socket, nobody listening) or does not answer."""


# -- the server -----------------------------------------------------------------------------


class ControlServer:
    """A Unix-socket JSON-lines server dispatching each request's ``cmd`` to a handler."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = Path(path)
        self.handlers = dict(handlers)
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Bind (replacing a stale socket file a crash left behind) and listen; mode 0600."""
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise OSError(f"control socket path {self.path} is longer than {MAX_SOCKET_PATH} bytes")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            st = self.path.lstat()
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"{self.path} exists and is not a socket; not replacing it")
            if _is_listening(self.path):
                raise OSError(f"{self.path}: another daemon is already listening there")
            self.path.unlink()
        # the umask makes the socket 0600 from its first instant: no window where others may connect
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_REQUEST)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        log.info("control socket on %s", self.path)

    async def close(self) -> None:
        """Stop listening, end open connections, remove the socket file."""
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    await self._send(writer, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
                    return  # the rest of the oversized line cannot be framed: close
                if not line:
                    return
                if not line.strip():
                    continue
                reply = await self.dispatch(line)
                await self._send(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply, default=str).encode() + b"\n")
        await writer.drain()

    async def dispatch(self, line: bytes) -> dict[str, Any]:
        """One request line to one reply; never raises."""
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"not a JSON object: {e}"}
        if not isinstance(req, dict):
            return {"ok": False, "error": 'a request is a JSON object like {"cmd": "status"}'}
        cmd = req.get("cmd")
        if not isinstance(cmd, str):
            return {"ok": False, "error": 'the request has no "cmd" string'}
        handler = self.handlers.get(cmd)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd[:40]!r}; known: {', '.join(sorted(self.handlers))}"}
        try:
            reply = await handler(req)
        except BadRequest as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a handler's bug must not end the server
            log.exception("control command %s failed", cmd)
            return {"ok": False, "error": f"{cmd} failed: {type(e).__name__}: {e}"}
        return {"ok": True, **reply} if "ok" not in reply else reply


class BadRequest(Exception):
    """The request's arguments are wrong; the message says which and how."""


def _is_listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(str(path))
        except OSError:
            return False
        return True


# -- the client (the web process; blocking, one request per connection) --------------------


class ControlClient:
    """Blocking client for the web process: ``request({"cmd": "status"}) -> dict``."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = 3.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout

    def request(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return the daemon's reply; DaemonUnavailable when it cannot be asked."""
        data = json.dumps(cmd).encode() + b"\n"
        if len(data) > MAX_REQUEST:
            raise ControlError(f"request longer than {MAX_REQUEST} bytes")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise DaemonUnavailable(f"the daemon is not running (no one at {self.path}: {e.strerror})") from None
            except PermissionError:
                raise DaemonUnavailable(f"not allowed to connect to {self.path} (run as the service user)") from None
            except OSError as e:
                raise DaemonUnavailable(f"cannot reach the daemon at {self.path}: {e}") from None
            try:
                s.sendall(data)
                buf = bytearray()
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    if len(buf) > MAX_REPLY:
                        raise ControlError(f"reply longer than {MAX_REPLY} bytes")
            except TimeoutError:
                raise DaemonUnavailable(f"the daemon did not answer within {self.timeout:g} s") from None
            except OSError as e:
                raise DaemonUnavailable(f"the daemon closed the connection: {e}") from None
        if not buf:
            raise DaemonUnavailable("the daemon closed the connection without a reply")
        try:
            reply = json.loads(buf)
        except ValueError as e:
            raise ControlError(f"the daemon's reply is not JSON: {e}") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise ControlError('the daemon\'s reply is not {"ok": ...}')
        return reply


# -- the appliance's commands -----------------------------------------------------------------


@dataclass
class TestFax:
    """One test fax sent to our own SIP listener by a ``faxbridge send-test-fax`` child."""

    id: str
    target: str
    started: float
    state: str = "running"  # running | ok | failed
    finished: float | None = None
    message: str = "calling the appliance's own SIP listener"
    output: list[str] = field(default_factory=list)
    #: where the owner fixes a failure: "sip" (the SIP settings) or "system" (the log); "" = nowhere
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "state": self.state,
            "started": self.started,
            "finished": self.finished,
            "message": self.message,
            "output": self.output[-20:],
            "fix": self.fix,
        }


class LiveCall(Protocol):
    """A SIP call in progress, as the status shows it (``inbound.InboundSipCall``)."""

    @property
    def channel(self) -> MediaChannel | None: ...

    def status(self) -> CallProgress: ...


class SipView(Protocol):
    """The SIP endpoint, as the status and the test fax see it (``sip.transport.SipEndpoint``)."""

    @property
    def locals(self) -> list[Local]: ...

    def status(self) -> SipStatus: ...


class Wakeable(Protocol):
    def wake(self) -> None: ...


class ControlledAppliance(Protocol):
    """What the commands ask of the daemon (``daemon.Appliance``; the tests' stand-ins): public
    attributes and each component's ``status()``, never another object's insides."""

    @property
    def cfg(self) -> Config: ...
    @property
    def spool(self) -> Spool: ...
    @property
    def sip(self) -> SipView: ...
    @property
    def calls(self) -> Mapping[str, LiveCall]: ...
    @property
    def modems(self) -> ModemManager | None: ...
    @property
    def delivery(self) -> Wakeable: ...
    @property
    def stats(self) -> Mapping[str, int]: ...
    #: every call's media counters and the clock (None: this process moves no media)
    @property
    def media_totals(self) -> MediaTotals | None: ...
    @property
    def media_clock(self) -> MediaClock | None: ...
    @property
    def restart_requested(self) -> asyncio.Event: ...

    def restart_needed(self) -> list[str]: ...

    async def reload_config(self) -> dict[str, Any]: ...

    def self_test_pass(self) -> SelfTestPass | None: ...


class ApplianceControl:
    """The commands, bound to a running ``Appliance``."""

    def __init__(self, app: ControlledAppliance) -> None:
        self.app = app
        self.started = time.time()
        self.test_faxes: dict[str, TestFax] = {}
        self._ids = itertools.count(1)
        self._children: set[asyncio.Task[Any]] = set()
        # its own thread for spool reads: the default executor's two threads may both sit in a slow
        # SMTP delivery, and the dashboard must not then take the daemon for dead; below the loop,
        # like every thread that shares its GIL (decision 0011)
        self._reader = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="faxbridge-control", initializer=worker_this_thread
        )

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "wake": self.wake,
            "reload": self.reload,
            "probe-modem": self.probe_modem,
            "test-fax": self.test_fax,
            "test-fax-status": self.test_fax_status,
            "restart": self.restart,
            "restart-needed": self.restart_needed,
        }

    async def close(self) -> None:
        for task in list(self._children):
            task.cancel()
        await asyncio.gather(*self._children, return_exceptions=True)
        self._reader.shutdown(wait=False)

    # -- status --------------------------------------------------------------------------------
    async def status(self, req: dict[str, Any]) -> dict[str, Any]:
        """Everything the dashboard shows live: lines, registrations, calls, queue, counters."""
        app = self.app
        loop = asyncio.get_running_loop()
        spool = app.spool
        receiving, queue = await loop.run_in_executor(
            self._reader, lambda: (spool.list_faxes(state="receiving", limit=100), spool.status())
        )
        by_call = {f.call_id: f for f in receiving if f.call_id}
        by_line = {f.line: f for f in reversed(receiving)}  # the newest receiving record per line
        calls: list[dict[str, Any]] = []
        for call_id, call in list(app.calls.items()):
            fax = by_call.get(call_id)
            calls.append({**call.status(), **_record_facts(fax), "call_id": call_id})
        modems = app.modems.status() if app.modems is not None else None
        for line in modems["lines"] if modems is not None else []:
            if line["state"] == "receiving":
                idle = CallProgress(
                    line="", mode="modem", codec="", bit_rate=0, ecm=None, pages=0, page=None, remote_ident=""
                )
                calls.append({**idle, **_record_facts(by_line.get(line["line"])), "line": line["line"], "call_id": ""})
        sip = app.sip.status()
        registrations = [
            {
                "name": r.name,
                "aor": r.aor,
                "state": r.state,
                "registered": r.registered,
                "expires_at": r.expires_at,
                "last_error": r.last_error,
            }
            for r in sip["registrations"]
        ]
        return {
            "version": version(),
            "pid": os.getpid(),
            "started": self.started,
            "restart_needed": app.restart_needed(),
            "uptime": round(time.time() - self.started, 1),
            "sip": {
                "listeners": [dict(l) for l in sip["listeners"]],
                "registrations": registrations,
                "peers": [
                    {"name": p.name, "match": p.match, "transport": p.transport, "t38": p.t38}
                    for p in app.cfg.sip.peers
                ],
                "refused": sip["refused"],
                "connections": sip["connections"],
                "max_calls": app.cfg.sip.max_calls,
            },
            "modems": modems,
            "calls": calls,
            "queue": queue["queue"],
            "oldest_waiting": queue["oldest_waiting"],
            "stats": dict(app.stats),
            "media": _media_totals(app),
        }

    # -- wake / reload / restart ----------------------------------------------------------------
    async def wake(self, req: dict[str, Any]) -> dict[str, Any]:
        self.app.delivery.wake()
        return {"message": "the delivery queue is being looked at now"}

    async def reload(self, req: dict[str, Any]) -> dict[str, Any]:
        return await self.app.reload_config()

    async def restart_needed(self, req: dict[str, Any]) -> dict[str, Any]:
        """Saved settings that wait for a restart of the daemon (cheap: every web page asks)."""
        return {"restart": self.app.restart_needed(), "started": self.started}

    async def restart(self, req: dict[str, Any]) -> dict[str, Any]:
        """Ask ``faxbridge run`` to stop the appliance cleanly and start it again (os.execv)."""
        asyncio.get_running_loop().call_later(RESTART_DELAY, self.app.restart_requested.set)
        log.warning("restart requested over the control socket")
        return {"message": "the appliance restarts now; calls in progress are ended and recorded"}

    # -- probe-modem ---------------------------------------------------------------------------
    async def probe_modem(self, req: dict[str, Any]) -> dict[str, Any]:
        """Who is the modem at ``device``?  A device a line already holds is described by that
        line (probing it would take the port away from a line that may be answering a call)."""
        device = req.get("device")
        if not isinstance(device, str) or not device or len(device) > 255 or "\0" in device:
            raise BadRequest('probe-modem needs "device", a path such as /dev/ttyUSB0')
        if self.app.modems is not None:
            line = self.app.modems.lines.get(device)
            if line is not None:
                st = line.status()
                words = f"This modem is in use by line {st['line']} ({st['state']}: {st['reason']}). " + (
                    f"It was identified as {line.info.describe()}, fax class {st['class']}."
                    if line.info
                    else "It has not been identified yet."
                )
                return {
                    "device": device,
                    "found": line.info is not None,
                    "in_use": True,
                    "message": words,
                    "modem": st.get("modem"),
                    "class": st.get("class"),
                }
        try:
            is_char = await asyncio.get_running_loop().run_in_executor(self._reader, _is_char_device, device)
        except OSError:
            return {
                "device": device,
                "found": False,
                "message": f"There is no device {device}. Is the modem plugged in? "
                "USB modems appear under /dev/serial/by-id/.",
            }
        if not is_char:
            raise BadRequest(f"{device} is not a serial device under /dev")
        try:
            return await asyncio.wait_for(self._probe(device), PROBE_TIMEOUT)
        except TimeoutError:
            return {
                "device": device,
                "found": False,
                "message": f"The device {device} did not finish answering within {PROBE_TIMEOUT:g} s: "
                "it is probably not a modem, or it hangs.",
            }

    async def _probe(self, device: str) -> dict[str, Any]:
        import serial

        from appliance.modem.probe import ProbeError, probe
        from appliance.modem.quirks import quirks_for
        from appliance.modem.serial_port import Flow, ModemError, ModemPort

        cfg = self.app.cfg.modem
        flow = cast(Flow, cfg.flow_control)  # a str in Config, which admits only Flow's values
        try:
            port = await ModemPort.open(device, baudrate=cfg.speed, flow=flow)
        except (OSError, serial.SerialException, ValueError) as e:
            return {
                "device": device,
                "found": False,
                "message": f"Could not open {device}: {e}. Another program (or a configured line) may be "
                "using it, or the service user may lack permission (group dialout).",
            }
        try:
            info = await probe(port)
        except (ProbeError, ModemError) as e:
            return {"device": device, "found": False, "message": f"{device} did not answer like a fax modem: {e}."}
        finally:
            port.close()
        try:
            chosen: str | None = info.pick_class(cfg.class_preference) if cfg.class_preference else info.pick_class()
        except ProbeError:
            chosen = None
        quirks = quirks_for(info)
        classes = ", ".join(c for c in info.classes if c != "0") or "none"
        words = (
            f"Found a fax modem: {info.describe()}. It speaks fax classes {classes}; "
            + (f"the appliance will use class {chosen}." if chosen else "none of them is one the appliance can use.")
            + (" Problems: " + "; ".join(info.problems) if info.problems else "")
        )
        return {
            "device": device,
            "found": True,
            "usable": chosen is not None,
            "message": words,
            "modem": info.as_dict(),
            "class": chosen,
            "quirks": quirks.name,
        }

    # -- test fax --------------------------------------------------------------------------------
    def own_target(self, called: str = "test") -> str:
        """A SIP URI for our own first UDP (else TCP) listener, as a caller on this box reaches it."""
        listeners = [l for l in self.app.sip.locals if l.transport in ("udp", "tcp")]
        if not listeners:
            raise BadRequest("the appliance has no UDP or TCP SIP listener to send a test fax to")
        l = sorted(listeners, key=lambda x: x.transport != "udp")[0]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(l.host, l.host)
        host = f"[{host}]" if ":" in host else host
        return f"sip:{called}@{host}:{l.port}" + (";transport=tcp" if l.transport == "tcp" else "")

    async def test_fax(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start sending a one-page test fax to ourselves; the reply comes at once with its id."""
        called = req.get("called", "test")
        if (
            not isinstance(called, str)
            or not called
            or len(called) > 32
            or any(not (c.isalnum() or c in "+-._") for c in called)
        ):
            raise BadRequest('"called" must be a number or SIP user (letters, digits, + - . _)')
        running = next((t for t in self.test_faxes.values() if t.state == "running"), None)
        if running is not None:
            return {"ok": False, "error": "A test fax is already being sent; wait for it to finish.", "id": running.id}
        try:
            target = self.own_target(called)
        except BadRequest as e:
            return {"ok": False, "error": f"The test fax cannot be sent: {e}.", "fix": "sip"}
        tf = TestFax(id=f"t{next(self._ids)}-{int(time.time())}", target=target, started=time.time())
        self.test_faxes[tf.id] = tf
        while len(self.test_faxes) > TEST_FAX_KEEP:
            self.test_faxes.pop(next(iter(self.test_faxes)))
        task = asyncio.create_task(self._send_test_fax(tf))
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        return {"id": tf.id, "target": target, "message": "The test fax is being sent; it takes about half a minute."}

    async def test_fax_status(self, req: dict[str, Any]) -> dict[str, Any]:
        tf_id = req.get("id")
        tf = self.test_faxes.get(tf_id) if isinstance(tf_id, str) else None
        if tf is None:
            raise BadRequest("no test fax with this id (ids are kept for the last 20 test faxes)")
        out = tf.as_dict()
        if tf.state == "running":
            out["message"] = f"{tf.message} ({round(time.time() - tf.started)} s so far)"
        return out

    async def _send_test_fax(self, tf: TestFax) -> None:
        """``faxbridge send-test-fax`` as a child: its media never shares this loop with real calls."""
        from appliance.fax.pages import write_fax_tiff
        from appliance.fax.testpages import demo_pages

        loop = asyncio.get_running_loop()
        tmp = Path(tempfile.mkdtemp(prefix="faxbridge-testfax-"))
        tiff = tmp / "test.tif"
        proc: asyncio.subprocess.Process | None = None
        # our own call is let in by a one-time pass, whatever [[sip.peers]] says (policy.SelfTestPass);
        # the secret goes to the child in its environment, which other users cannot read
        gate_pass = self.app.self_test_pass()
        env = dict(os.environ)
        if gate_pass is not None:
            env[SELF_TEST_ENV] = gate_pass.issue(loop.time(), TEST_FAX_TIMEOUT + 30)
        try:
            await loop.run_in_executor(None, lambda: write_fax_tiff(demo_pages(1), tiff))
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "appliance",
                "send-test-fax",
                "--to",
                tf.target,
                "--caller",
                "test",
                "--caller-name",
                "Faxbridge self-test",
                "--ident",
                self.app.cfg.fax.ident or "Faxbridge",
                "--timeout",
                str(int(TEST_FAX_TIMEOUT)),
                str(tiff),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            tf.message = "the call is in progress"
            out, _ = await asyncio.wait_for(proc.communicate(), TEST_FAX_TIMEOUT + 30)
            lines = out.decode("utf-8", "replace").splitlines()
            tf.output = [l[:300] for l in lines[-40:]]
            tf.state, tf.message, tf.fix = _test_fax_verdict(proc.returncode, lines)
        except TimeoutError:
            tf.state, tf.message, tf.fix = (
                "failed",
                "The test fax did not finish in time; the sender was stopped.",
                "system",
            )
        except asyncio.CancelledError:
            tf.state, tf.message = "failed", "The appliance stopped before the test fax finished."
            raise
        except Exception as e:
            log.exception("test fax %s", tf.id)
            tf.state, tf.message, tf.fix = "failed", f"The test fax could not be started: {e}", "system"
        finally:
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await proc.wait()
            tf.finished = time.time()
            if gate_pass is not None:
                gate_pass.revoke()
            # our own temp dir: as brief as mkdtemp above, not worth an executor round trip in a finally
            with contextlib.suppress(OSError):
                tiff.unlink(missing_ok=True)
                tmp.rmdir()  # noqa: ASYNC240
            log.info("test fax %s to %s: %s: %s", tf.id, tf.target, tf.state, tf.message)


def _is_char_device(device: str) -> bool:
    """`device` leads to a character device under /dev (OSError when it leads nowhere)."""
    real = os.path.realpath(device)
    return real.startswith("/dev/") and stat.S_ISCHR(os.stat(real).st_mode)


def _test_fax_verdict(returncode: int | None, lines: list[str]) -> tuple[str, str, str]:
    """(state, plain words, where to fix it) from send-test-fax's last line ("OK: ..." or
    "FAILED: <what happened>; <mode>; ..."): only what happened is shown, in the page's words."""
    result = next((l for l in reversed(lines) if l.startswith(("OK:", "FAILED:"))), "")
    if returncode == 0 and result.startswith("OK:"):
        return "ok", "The test fax went through: the appliance received it and will deliver it like any fax.", ""
    what = result.split(":", 1)[1].split(";", 1)[0].strip() if result else ""
    code = re.search(r"\bcall failed: (\d{3})\b", what)
    status = int(code.group(1)) if code else 0
    if status in (401, 403, 407):
        return (
            "failed",
            (
                "The appliance refused the call from itself (SIP answered "
                f"{what.removeprefix('call failed: ')}). Check who may call in the SIP settings, "
                "or look in the log on the System page for why."
            ),
            "sip",
        )
    if status == 503 or status == 486:
        return (
            "failed",
            (
                "The appliance is busy: as many calls as it takes at once are in progress. "
                "Try again when they have ended."
            ),
            "",
        )
    if status and status != 408:
        return (
            "failed",
            (
                f"The appliance answered the call with an error (SIP "
                f"{what.removeprefix('call failed: ')}). The log on the System page says why."
            ),
            "system",
        )
    if status == 408 or "timed out" in what or not what:
        return (
            "failed",
            ("Nothing answered on the appliance's own SIP listener. Check the listeners in the SIP settings."),
            "sip",
        )
    return (
        "failed",
        (f"The call was answered but the fax did not go through ({what}). The log on the System page has the details."),
        "system",
    )


def _media_totals(app: ControlledAppliance) -> dict[str, Any] | None:
    """The media counters of every call since start, the calls in progress included."""
    totals, clock = app.media_totals, app.media_clock
    if totals is None or clock is None:
        return None
    live = [channel for c in list(app.calls.values()) if (channel := c.channel) is not None]
    return totals.snapshot(live, clock)


def _record_facts(fax: FaxRecord | None) -> dict[str, Any]:
    """The call's facts as the spool recorded them when it was answered."""
    if fax is None:
        return {"fax_id": None, "caller_number": "", "caller_name": "", "called_number": "", "started": None}
    out = {
        "fax_id": fax.id,
        "caller_number": fax.caller_number,
        "caller_name": fax.caller_name,
        "called_number": fax.called_number,
        "started": fax.created,
    }
    if fax.line:
        out["line"] = fax.line
    return out

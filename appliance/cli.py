"""The ``faxbridge`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.config import CONFIG_NAME, Config, ConfigError
from appliance.startup import (
    STATE_DIR_HELP,
    WEB_PARENT_ENV,
    add_config_arguments,
    load_args,
    private_files,
    state_dir_of,
)

if TYPE_CHECKING:  # the daemon is imported only by the commands that run it
    from appliance.daemon import Appliance


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.daemon import Appliance
    from appliance.sdnotify import Notifier, keep_alive, watchdog_interval

    cfg = load_args(args)
    from appliance.logfile import add_file_logging, log_path, off_the_loop, stray_log

    add_file_logging(cfg)
    for warning in cfg.path_warnings():
        logging.getLogger("faxbridge.cli").warning("configuration: %s", warning)
    if (old := stray_log(cfg)) is not None:
        logging.getLogger("faxbridge.cli").warning(
            "an older log is at %s (written there before the log's place was "
            "fixed to the state directory); the log is %s",
            old,
            log_path(cfg),
        )
    logs = off_the_loop()
    notifier = Notifier()
    restart = False
    web: subprocess.Popen[bytes] | None = None
    # its own process: a crash in the web UI never touches a call in progress
    # the same file and state directory as the daemon: the web UI edits that file, asks the
    # daemon to reload it, and finds the spool, the log and the control socket where it put them
    web_cmd = [sys.executable, "-m", "appliance", "web", "--state-dir", str(cfg.base_dir)] + (
        ["--config", str(cfg.source)] if cfg.source else []
    )
    # tells the web process that a restart of this one restarts it too (web/pending.py)
    web_env = {**os.environ, WEB_PARENT_ENV: str(os.getpid())}
    if cfg.web.enabled and not args.no_web:
        # made before the web process starts, so both show the same code; printed before the
        # page answers, so whoever opens it finds the code already in the terminal
        if code := _ensure_setup_code(cfg):
            print(f"First start: the web page asks for this setup code: {code}", file=sys.stderr, flush=True)
        web = subprocess.Popen(web_cmd, env=web_env)

    async def keep_web() -> None:
        """Start the web process again when it ends (its own restart for new web settings, or a
        crash), as systemd does on the box; one that keeps failing at once waits longer each time."""
        nonlocal web
        wait, started = 1.0, time.monotonic()
        while web is not None:
            await asyncio.sleep(1.0)
            if web.poll() is None:
                continue
            wait = 1.0 if time.monotonic() - started > 30 else min(wait * 2, 60.0)
            logging.getLogger("faxbridge.cli").info(
                "web UI ended (exit %s); starting it again in %.0f s", web.returncode, wait
            )
            await asyncio.sleep(wait)
            # Popen returns once the child is exec'd (vfork): no longer than asyncio's own would
            web, started = subprocess.Popen(web_cmd, env=web_env), time.monotonic()  # noqa: ASYNC220

    async def main() -> None:
        nonlocal restart
        app = Appliance(cfg)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await app.start()
        print(_banner(cfg, app), file=sys.stderr, flush=True)
        # systemd (Type=notify): ready once SIP and the control socket listen; the watchdog fed
        # from this loop, so a stalled loop is restarted like a dead process (sdnotify.py)
        notifier.notify(READY=1, STATUS=app.status_line())
        interval = watchdog_interval()
        pinger = asyncio.ensure_future(keep_alive(notifier, interval, app.status_line)) if interval else None
        keeper = asyncio.ensure_future(keep_web())
        try:
            # SIGTERM/SIGINT, or "restart" on the control socket (the web page's restart button)
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(app.restart_requested.wait())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            restart = app.restart_requested.is_set() and not stop.is_set()
        finally:
            # a restart re-executes this process: to systemd that is a reload, READY=1 ends it
            notifier.notify(
                **({"RELOADING": 1} if restart else {"STOPPING": 1}), STATUS="restarting" if restart else "stopping"
            )
            if pinger is not None:
                pinger.cancel()
            keeper.cancel()
            await app.stop()
            logging.getLogger("faxbridge.cli").info("stopped%s", " for a restart" if restart else "")

    try:
        asyncio.run(main())
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(5)
            except subprocess.TimeoutExpired:
                web.kill()
    if not restart:
        logs.stop()  # every queued record written before the process ends
    if restart:
        # the same command line again, in the same process (systemd keeps tracking the PID)
        logging.getLogger("faxbridge.cli").warning("restarting: %s", " ".join(sys.orig_argv))
        logs.stop()
        logging.shutdown()
        sys.stderr.flush()
        notifier.notify(WATCHDOG=1)  # the new process has a whole WatchdogSec to start and ping
        os.execv(sys.executable, sys.orig_argv)
    return 0


def _ensure_setup_code(cfg: Config) -> str:
    """The first-start page's one-time code (made now if there is none), as the web UI reads it;
    "" once a password is set."""
    from appliance.web import setupcode

    state = cfg.path(cfg.web.state_dir)
    if (state / "admin.json").exists():
        return ""
    return setupcode.ensure(state)


def _banner(cfg: Config, app: Appliance) -> str:
    sip = [f"{l.transport}:{l.host}:{l.port}" for l in app.sip.locals]
    udp = next((x for x in sip if x.startswith("udp:")), sip[0] if sip else "udp:127.0.0.1:5060")
    _, host, port = udp.split(":")
    where = (
        f"Maildir {cfg.path(cfg.delivery.url).resolve()}"
        if cfg.delivery.backend == "maildir"
        else f"SMTP {cfg.delivery.url}"
    )
    web_note = ""
    if cfg.web.https and not cfg.web.cert_file:
        web_note = " (certificate generated on first start: accept it once)"
    if cfg.web.enabled and not (cfg.path(cfg.web.state_dir) / "admin.json").exists():
        # made here too: under supervisor or systemd the web UI is a program of its own (--no-web)
        code = _ensure_setup_code(cfg)
        web_note += (
            "\n             first visit: choose the administrator password (there is no default)"
            f"\n             with this setup code: {code}"
        )
    if not cfg.web.enabled:
        web_note = " (web UI switched off)"
    from appliance.logfile import log_path

    config = str(cfg.source) if cfg.source else f"embedded defaults (the web UI saves to {cfg.base_dir / CONFIG_NAME})"
    return (
        f"Faxbridge is running.\n"
        f"  SIP:       {', '.join(sip)}\n"
        f"  Web:       {'https' if cfg.web.https else 'http'}://{cfg.web.listen}/{web_note}\n"
        f"  Config:    {config}\n"
        f"  State:     {cfg.base_dir} (relative paths start here)\n"
        f"  Spool:     {cfg.path(cfg.spool.dir).resolve()}\n"
        f"  Log:       {log_path(cfg)}\n"
        f"  Delivery:  {where} (default recipient {cfg.routing.default})\n"
        f"Send it a test fax from another shell:\n"
        f"  .venv/bin/faxbridge send-test-fax --to sip:fax@{host}:{port} --demo\n"
        f"Stop with Ctrl-C."
    )


def cmd_reset_password(args: argparse.Namespace) -> int:
    """A forgotten password: whoever has a shell on the box owns it, so they may start over.
    Every session ends with it (the session key goes too)."""
    cfg = load_args(args)
    state = cfg.path(cfg.web.state_dir)
    files = [state / "admin.json", state / "session.key"]
    if not files[0].exists():
        print(f"no administrator password is set ({files[0]} does not exist)")
        return 0
    if not args.yes:
        answer = input(
            f"Forget the administrator password in {state}? Until a new one is set, anyone "
            "who can open the web page can set it. [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    for f in files:
        f.unlink(missing_ok=True)
    code = _ensure_setup_code(cfg)
    print(
        "The password is forgotten. Restart the web UI (or the appliance), then open the web page "
        f"to choose a new one, with this setup code: {code}"
    )
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    from appliance.web.server import serve

    return serve(load_args(args))


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem of the file at once (with hints), then warnings about paths; 1 on an error."""
    state = state_dir_of(args)
    path = Path(args.file) if args.file else state / CONFIG_NAME
    try:
        if args.file or path.is_file():
            cfg = Config.load(path, state_dir=state)
            name = str(path)
        else:
            cfg = Config.from_dict({}, base_dir=state)
            name = f"no {path}: the embedded defaults"
    except ConfigError as e:
        for err in e.errors:
            print(f"error: {err}", file=sys.stderr)
        print(
            f"{len(e.errors)} problem(s) in {path}; relative paths are relative to the state directory {state}",
            file=sys.stderr,
        )
        return 1
    for warning in cfg.path_warnings():
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{name}: OK")
    print(f"state directory: {state} (relative paths in the file are relative to it)")
    if cfg.delivery.backend in ("smtp", "direct"):  # its default depends on the server
        print(f"delivery.starttls: {cfg.delivery.starttls_in_effect()}")
    for line in _outbound_summary(cfg):
        print(line)
    return 0


def _outbound_summary(cfg: Config) -> list[str]:
    """How numbers are read and which way each route sends them: what check-config cannot see as
    wrong but the owner should read once (a route that forbids too little, a missing prefix)."""
    o = cfg.outbound
    if not o.enabled and not o.routes:
        return []
    where = f"+{o.country_code}" if o.country_code else "no country (so only +... numbers work)"
    if o.area_code:
        where += f", area code {o.area_code}"
    lines = [
        f"outbound: sending is {'on' if o.enabled else 'off'}; numbers without a country code are taken to be "
        f"in {where} (international prefix {o.international_prefix!r}, trunk prefix {o.national_prefix!r})"
    ]
    for r in o.routes:
        prefix = f", dial prefix {r.dial_prefix!r}" if r.dial_prefix else ""
        forbids = f"; forbids {', '.join(r.forbid)}" if r.forbid else ""
        lines.append(
            f"outbound route {r.name}: numbers matching {r.match!r} -> {r.via} ({r.number_format}{prefix}{forbids})"
        )
    return lines


def cmd_send_test_fax(args: argparse.Namespace) -> int:
    from appliance.fax.sender import send_fax

    if args.demo:
        import tempfile

        from appliance.fax.pages import write_fax_tiff
        from appliance.fax.testpages import demo_pages

        fd, name = tempfile.mkstemp(suffix=".tif")
        os.close(fd)
        write_fax_tiff(demo_pages(), name)
        tiff = Path(name)
    elif args.file:
        tiff = Path(args.file)
        if not tiff.is_file():
            print(f"error: {tiff}: no such file", file=sys.stderr)
            return 2
    else:
        print("error: give a TIFF (or any image) to send, or --demo", file=sys.stderr)
        return 2
    headers = []
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip() or any(c in h for c in "\r\n"):
            print(f"error: --header {h!r} is not 'Name: value'", file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    from appliance.sip.policy import SELF_TEST_ENV, SELF_TEST_HEADER

    own_pass = os.environ.get(SELF_TEST_ENV, "")
    if own_pass:  # the daemon's own test call (control.py): its one-time pass past the peer table
        headers.append((SELF_TEST_HEADER, own_pass))
    result = asyncio.run(
        send_fax(
            args.to,
            tiff,
            caller=args.caller,
            caller_name=args.caller_name,
            ident=args.ident,
            codec=args.codec,
            ecm=not args.no_ecm,
            hangup_after_pages=args.hangup_after,
            timeout=args.timeout,
            t38=args.t38,
            loss=args.loss,
            bind=args.bind,
            headers=headers,
            refresh=args.refresh,
            audio_after=args.audio_after,
            ca_file=args.ca,
        )
    )
    extras = (f"; {result.refreshes} refresh(es)" if result.refreshes else "") + (
        "; back to audio after the fax" if result.back_to_audio else ""
    )
    parts = [
        result.status,
        result.mode,
        f"{result.pages_sent} page(s) sent"
        + (f" at {result.bit_rate} bit/s" if result.bit_rate else "")
        + (", ECM" if result.ecm else ""),
        f"far end {result.remote_ident!r}" if result.remote_ident else "",
        f"{result.duration} s",
    ]
    print(f"{'OK' if result.ok else 'FAILED'}: {'; '.join(p for p in parts if p)}{extras}")
    if args.demo:
        os.unlink(tiff)
    return 0 if result.ok else 1


def cmd_selftest(args: argparse.Namespace) -> int:
    """Imports every part and loads the binding: run at image build time and before the service starts."""
    import aiosmtpd.smtp  # noqa: F401 - mail to fax (imported only when a listener starts)
    import pypdfium2  # noqa: F401 - PDF rendering (imported only in the renderer's child)

    from appliance import daemon  # noqa: F401
    from appliance.firstboot import run  # noqa: F401
    from appliance.outbound import mailin, renderjob  # noqa: F401
    from appliance.spandsp.t30 import result_text
    from appliance.web import app  # noqa: F401

    load_args(args)
    assert result_text(0) == "OK"
    print("selftest OK")
    return 0


# -- virtual-modem (tests and demos: two emulated Class 1 modems on one line) ---------------
def cmd_virtual_modem(args: argparse.Namespace) -> int:
    from appliance.modem.virtual import LineOptions, serve

    try:
        options = LineOptions(
            noise_db=args.noise_db, drop_audio=args.drop, hangup_after_page=args.hangup_after_page, class2=args.class2
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    asyncio.run(serve(args.link[0], args.link[1], options))
    return 0


def _add_virtual_modem(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = sub.add_parser("virtual-modem", help="two pseudo-terminal Class 1 fax modems on one virtual line")
    v.add_argument("--link", nargs=2, required=True, metavar=("A", "B"), help="symlinks to create for the two ptys")
    v.add_argument("--noise-db", type=float, metavar="DBM0", help="white noise on the line at this level")
    v.add_argument("--drop", type=float, default=0.0, metavar="P", help="probability of losing each 20 ms block")
    v.add_argument("--hangup-after-page", type=int, metavar="N", help="drop the call once N pages went through")
    v.add_argument(
        "--class2",
        choices=["A", "B"],
        help="make this port a Class 2/2.0 modem only (any port switches on AT+FCLASS=2.0)",
    )
    v.set_defaults(func=cmd_virtual_modem)


# -- end virtual-modem ------------------------------------------------------------------------


# -- modem-probe (what HylaFAX's probemodem does: which modem is this, which class, which quirks) -
def cmd_modem_probe(args: argparse.Namespace) -> int:
    import serial

    from appliance.modem.probe import DEFAULT_CLASS_PREFERENCE, ProbeError, probe
    from appliance.modem.quirks import quirks_for
    from appliance.modem.serial_port import ModemError, ModemPort

    async def go() -> int:
        try:
            port = await ModemPort.open(args.device, baudrate=args.speed, flow=args.flow)
        except (OSError, serial.SerialException, ValueError) as e:
            print(f"error: cannot open {args.device}: {e}", file=sys.stderr)
            return 1
        try:
            info = await probe(port)
        except (ProbeError, ModemError) as e:
            print(f"error: {args.device}: {e}\n{port.history()}", file=sys.stderr)
            return 1
        finally:
            port.close()
        quirks = quirks_for(info)
        print(f"modem:    {info.describe()}")
        print(f"classes:  {','.join(info.classes) or 'none reported'}")
        try:
            print(f"class:    {info.pick_class(args.prefer or DEFAULT_CLASS_PREFERENCE)}")
        except ProbeError as e:
            print(f"class:    none usable: {e}")
        if info.tx_rates or info.rx_rates:
            print(f"class 1:  +FTM {info.tx_rates}  +FRM {info.rx_rates}")
        print(
            f"quirks:   {quirks.name} ({quirks.source}); init {list(quirks.init)}; caller ID "
            f"{quirks.caller_id}; flags {sorted(quirks.flags)}"
        )
        for cmd, lines in info.raw.items():
            print(f"  {cmd:<22} {' | '.join(lines)}")
        for problem in info.problems:
            print(f"problem:  {problem}")
        return 0

    return asyncio.run(go())


def _add_modem_probe(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("modem-probe", help="identify a fax modem: make, model, classes, the quirks used")
    m.add_argument("device", help="e.g. /dev/serial/by-id/usb-... (stop the appliance first)")
    m.add_argument("--speed", type=int, default=115200)
    m.add_argument("--flow", choices=["rtscts", "xonxoff", "none"], default="rtscts")
    m.add_argument("--prefer", nargs="+", metavar="CLASS", help="class preference (default 1.0 1 2.0 2)")
    m.set_defaults(func=cmd_modem_probe)


# -- end modem-probe --------------------------------------------------------------------------


# -- route (which rule a call would reach, without a call) ------------------------------------
def cmd_route(args: argparse.Namespace) -> int:
    """Print the routing decision for the given call facts; 2 when the config is wrong."""
    from appliance.routing.router import route

    try:
        cfg = load_args(args)
    except ConfigError as e:
        for err in e.errors:
            print(f"error: {err}", file=sys.stderr)
        return 2
    d = route(
        cfg.routing,
        called_number=args.called,
        caller_number=args.caller,
        remote_ident=args.tsi,
        line=args.line,
        um_recipient=args.um,
    )
    print(f"rule:       {d.rule}")
    print(f"recipients: {', '.join(d.recipients) or '(none)'}")
    print(f"to:         {', '.join(d.to)}")
    print(f"cc:         {', '.join(d.cc)}")
    print(f"format:     {d.format}")
    print(f"tiff:       {d.tiff}")
    print(f"subject:    {d.subject or '(delivery default)'}")
    for why in d.refused:
        print(f"refused:    {why}")
    return 0


def _add_route(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("route", help="show where a fax with these call facts would go, and which rule says so")
    add_config_arguments(r)
    r.add_argument("--called", default="", metavar="N", help="called number (DID/DNIS)")
    r.add_argument("--caller", default="", metavar="N", help="calling number")
    r.add_argument("--tsi", default="", metavar="S", help="the sender's TSI (fax ident)")
    r.add_argument("--line", default="", metavar="L", help='"modem:ttyUSB0" or "sip:<peer name>"')
    r.add_argument("--um", default="", metavar="ADDR", help="Exchange UM referral's recipient")
    r.set_defaults(func=cmd_route)


# -- end route --------------------------------------------------------------------------------


def cmd_firstboot(args: argparse.Namespace) -> int:
    """Called by the image at every boot before the appliance starts; never stops the boot."""
    from appliance.firstboot.run import firstboot

    report = firstboot(
        Path(args.boot), Path(args.data), Path(args.root), args.user, Path(args.system) if args.system else None
    )
    for line in report.done:
        print(f"firstboot: {line}")
    for problem in report.problems:
        print(f"firstboot: {problem}", file=sys.stderr)
    if report.setup_code:
        print(f"firstboot: setup code for the first start: {report.setup_code}")
    return 0


def main(argv: list[str] | None = None) -> int:
    private_files()
    p = argparse.ArgumentParser(prog="faxbridge", description="Fax to Exchange mailbox appliance")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the appliance (daemon and web UI) in the foreground")
    add_config_arguments(r)
    r.add_argument("--no-web", action="store_true", help="do not start the web UI process")
    r.set_defaults(func=cmd_run)

    w = sub.add_parser("web", help="serve only the web UI")
    add_config_arguments(w)
    w.set_defaults(func=cmd_web)

    rp = sub.add_parser(
        "reset-password",
        help="forget the web UI's administrator password (on the box itself): the next visit asks for a new one",
    )
    add_config_arguments(rp)
    rp.add_argument("--yes", action="store_true", help="do it without asking")
    rp.set_defaults(func=cmd_reset_password)

    c = sub.add_parser("check-config", help="validate a configuration file: every problem at once, with hints")
    c.add_argument("file", nargs="?", help=f"the file to check (default: {CONFIG_NAME} in the state directory)")
    c.add_argument("--state-dir", metavar="DIR", help=STATE_DIR_HELP)
    c.set_defaults(func=cmd_check_config)

    s = sub.add_parser("send-test-fax", help="place a real fax call over SIP (spandsp as the caller)")
    s.add_argument("--to", required=True, help="sip:USER@HOST[:PORT][;transport=tcp|tls]")
    s.add_argument("file", nargs="?", help="TIFF or image to send (converted to fax format if needed)")
    s.add_argument("--demo", action="store_true", help="send built-in test pages instead of a file")
    s.add_argument("--caller", default="5550100", help="calling number (From user)")
    s.add_argument("--caller-name", default="Faxbridge test")
    s.add_argument("--ident", default="", help="our TSI")
    s.add_argument("--codec", choices=["PCMU", "PCMA"], help="offer only this codec")
    s.add_argument("--no-ecm", action="store_true")
    s.add_argument("--hangup-after", type=int, metavar="N", help="hang up after page N (test incomplete faxes)")
    s.add_argument("--timeout", type=float, default=600.0)
    s.add_argument(
        "--t38",
        choices=["off", "reinvite", "accept", "initial", "initial-both", "refuse", "silent"],
        default="off",
        help="T.38: re-INVITE to it after the answer, accept the far end's re-INVITE, offer it "
        "in the INVITE (alone or with audio), refuse it (off: refuse and stay on G.711), "
        "or agree and never send it (a broken gateway)",
    )
    s.add_argument(
        "--refresh",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="re-INVITE with the unchanged SDP this often during the fax (session timer)",
    )
    s.add_argument("--audio-after", action="store_true", help="re-INVITE back to audio after the fax")
    s.add_argument("--ca", metavar="FILE", help="CA bundle that verifies the far end's TLS certificate")
    s.add_argument("--bind", metavar="ADDRESS", help="our local address (default: the route to the target)")
    s.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra INVITE header, e.g. an Exchange UM Referred-By (repeatable)",
    )
    s.add_argument(
        "--loss",
        type=float,
        default=0.0,
        metavar="P",
        help="drop this share (0-0.5) of our outgoing media packets, to test redundancy",
    )
    s.set_defaults(func=cmd_send_test_fax)

    t = sub.add_parser("selftest", help="check the installation (imports, spandsp binding, config)")
    add_config_arguments(t)
    t.set_defaults(func=cmd_selftest)

    fb = sub.add_parser(
        "firstboot",
        help="make the box unique and apply faxbridge.txt (the image runs it as root at every boot; safe to run again)",
    )
    fb.add_argument("--boot", required=True, metavar="DIR", help="the boot (FAT) partition with faxbridge.txt")
    fb.add_argument("--data", required=True, metavar="DIR", help="the state directory on the data partition")
    fb.add_argument("--root", default="/", metavar="DIR", help="the root file system to write into (default: /)")
    fb.add_argument(
        "--user",
        default="",
        metavar="NAME",
        help="the appliance's service user: it gets the configuration and the web state (the image: faxbridge)",
    )
    fb.add_argument(
        "--system",
        metavar="DIR",
        help="root's own directory for the SSH host keys, machine-id and imported Wi-Fi passphrase "
        "(default: DATA/firstboot; the image: one outside the state directory)",
    )
    fb.set_defaults(func=cmd_firstboot)

    _add_virtual_modem(sub)
    _add_modem_probe(sub)

    from appliance.queue_cli import add_parsers as _add_queue_parsers

    _add_queue_parsers(sub, load_args, add_config_arguments)
    from appliance.backup.cli import add_parsers as _add_backup_parsers

    _add_backup_parsers(sub, load_args, add_config_arguments)
    from appliance.delivery.trial import add_parser as _add_test_delivery

    _add_test_delivery(sub, load_args, add_config_arguments)
    _add_route(sub)
    from appliance.update.cli import add_parsers as _add_update_parsers

    _add_update_parsers(sub, load_args, add_config_arguments)
    from appliance.outbound.cli import add_parser as _add_send

    _add_send(sub, load_args, add_config_arguments)

    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as e:
        for err in e.errors:
            print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

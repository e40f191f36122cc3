"""``faxbridge send --to NUMBER FILE... [--cover-note TEXT] [--wait]``: queue a fax with the
running daemon and, with --wait, print how it ended.

The files go into the spool's staging directory (so run it as the appliance's user, or as root);
the request goes over the control socket. Exit status: 0 sent (or queued without --wait), 1 the
fax failed or was cancelled, 2 refused (the reason is printed), 3 the daemon is not running.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.control import ControlClient, ControlError
from appliance.outbound.staging import SubmitRefused, remove_staging, stage_files

FINAL = ("sent", "failed", "cancelled")
#: how long --wait waits for a job that is still queued or being sent
WAIT_LIMIT = 6 * 3600


def cmd_send(args: argparse.Namespace, cfg: Config) -> int:
    files: list[tuple[str, bytes]] = []
    for name in args.files:
        try:
            files.append((Path(name).name, Path(name).read_bytes()))
        except OSError as e:
            print(f"cannot read {name}: {e.strerror}", file=sys.stderr)
            return 2
    client = ControlClient(cfg.path(cfg.system.control_socket), timeout=120.0)
    cover = None
    if args.cover_note or args.cover_to or args.cover_from or args.cover_subject:
        cover = {
            "from": args.cover_from or "",
            "to": args.cover_to or "",
            "subject": args.cover_subject or "",
            "note": args.cover_note or "",
        }
    try:
        if not files and cover is None:
            raise SubmitRefused("give at least one file, or a cover page (--cover-note)")
        token = stage_files(cfg, files)
    except SubmitRefused as e:
        print(f"not sent: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"cannot write to the spool ({e}); run this as the appliance's user or with sudo", file=sys.stderr)
        return 2
    try:
        reply = client.request(
            {
                "cmd": "outbound-submit",
                "staging": token,
                "number": args.to,
                "cover": cover,
                "sender": args.report_to or "",
                "source": "cli",
                "subject": args.subject or "",
            }
        )
    except ControlError as e:
        remove_staging(cfg, token)
        print(f"the fax daemon is not reachable: {e}", file=sys.stderr)
        return 3
    if not reply.get("ok"):
        remove_staging(cfg, token)
        print(f"not sent: {reply.get('error')}", file=sys.stderr)
        return 2
    job = reply["job"]
    print(f"queued as fax {job['id']} to {job['e164']} via {job['route']}: {job['pages']} page(s)")
    if not args.wait:
        return 0
    return wait_for(client.request, job["id"], print)


def wait_for(
    ask: Callable[[dict[str, Any]], dict[str, Any]],
    job_id: int,
    say: Callable[[str], Any],
    *,
    poll: float = 2.0,
    limit: float = WAIT_LIMIT,
) -> int:
    """Poll the job until it ends; print each change of state and the report."""
    seen = ""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            reply = ask({"cmd": "outbound-get", "id": job_id})
        except ControlError as e:
            say(f"lost the fax daemon ({e}); the fax stays queued: see `faxbridge send` again or the web page")
            return 3
        if not reply.get("ok"):
            say(f"error: {reply.get('error')}")
            return 3
        job = reply["job"]
        now = f"{job['state']} {job['pages_confirmed']}/{job['pages']} {job['last_result']}"
        if now != seen:
            seen = now
            extra = f": {job['last_words']}" if job["last_words"] and job["state"] != "sent" else ""
            say(f"fax {job_id}: {job['state']}, {job['pages_confirmed']} of {job['pages']} page(s) confirmed{extra}")
        if job["state"] in FINAL:
            for label, value in job["report"]:
                say(f"  {label}: {value}")
            return 0 if job["state"] == "sent" else 1
        time.sleep(poll)
    say("still not finished; the fax stays queued")
    return 1


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    load: Callable[[argparse.Namespace], Config],
    config_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    s = sub.add_parser("send", help="send a fax through the running appliance (PDF, TIFF, PNG, JPEG)")
    s.add_argument("--to", required=True, help="the fax number, as you would dial it or in E.164 (+15551234567)")
    s.add_argument("files", nargs="*", help="the documents, in page order")
    s.add_argument("--cover-note", help="a cover page with this note")
    s.add_argument("--cover-to", help="the cover page's recipient name")
    s.add_argument("--cover-from", help="the cover page's sender name")
    s.add_argument("--cover-subject", help="the cover page's subject")
    s.add_argument("--subject", help="a subject kept with the job")
    s.add_argument("--report-to", help="mail the report to this address")
    s.add_argument("--wait", action="store_true", help="wait until the fax is sent or has failed, and print the report")
    config_arguments(s)
    s.set_defaults(func=lambda a: cmd_send(a, load(a)))

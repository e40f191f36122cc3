"""``faxbridge queue`` and ``faxbridge resend``: look at and re-queue delivery jobs.

Both work while the daemon runs: the spool is SQLite in WAL mode, so this process reads (and,
for resend, writes one short transaction) beside the daemon.  The daemon's worker looks at the
queue at least every ``MAX_IDLE`` seconds (60), so a resent job goes out within a minute.
A fax is named by its number, as on the web pages and in the mails; ``resend`` also takes the
hex id that older versions printed (decision 0014).  Times are in ``system.timezone``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable

from appliance import localtime
from appliance.config import Config, address_problem
from appliance.spool.store import JOB_STATES, FaxRecord, Spool


def _when(t: float | None, tz: localtime.Zone) -> str:
    return "-" if t is None else localtime.format_time(t, tz, localtime.MINUTES)


def find_fax(spool: Spool, name: str) -> FaxRecord | None:
    """The fax ``name`` stands for: its number ("12", "#12"), or the hex id older versions showed."""
    text = name.strip().lstrip("#")
    fax = None
    if text.isascii() and text.isdigit() and len(text) <= 18:
        fax = spool.get_fax(int(text))
    if fax is None and re.fullmatch(r"[0-9a-fA-F]{16}", text):  # an old id may be all digits
        fax = spool.get_fax_by_uid(text.lower())
    return fax


def _hide(cfg: Config) -> Callable[[str], str]:
    """Masks the configured delivery password in anything printed, as a second line of defence."""
    secret = cfg.delivery.password

    def hide(text: str) -> str:
        return text.replace(secret, "********") if secret else text

    return hide


def cmd_queue(args: argparse.Namespace, cfg: Config) -> int:
    """One line per job: fax, recipient, state, attempts, next try, last error with advice."""
    hide = _hide(cfg)
    try:
        spool = Spool(cfg.path(cfg.spool.dir), readonly=True)
    except FileNotFoundError as e:
        print(f"error: {e} (spool.dir in the configuration)", file=sys.stderr)
        return 1
    with spool:
        rows = spool.list_jobs(state=args.state)
    tz = localtime.zone(cfg.system.timezone)
    print(f"{'FAX':<6} {'RECIPIENT':<32} {'STATE':<15} {'TRIES':>5} {'NEXT TRY':<22} LAST ERROR / ADVICE")
    for job in rows:
        waiting = job.state in ("queued", "failed_retrying")
        print(
            f"{job.fax_id:<6} {job.recipient:<32} {job.state:<15} {job.attempts:>5} "
            f"{_when(job.next_attempt if waiting else None, tz):<22} {hide(job.last_error) or '-'}"
        )
    return 0


def cmd_resend(args: argparse.Namespace, cfg: Config) -> int:
    """Queue the fax again, to --to or to every recipient it had (see ``Spool.resend``); an
    address outside routing.accepted_domains is refused (exit 1) and nothing queued for it."""
    with Spool(cfg.path(cfg.spool.dir)) as spool:
        fax = find_fax(spool, args.fax)
        if fax is None:
            print(
                f"error: no fax {args.fax!r} in {spool.root} (give its number, as 'faxbridge queue' "
                "and the web page show it)",
                file=sys.stderr,
            )
            return 1
        recipients = [args.to] if args.to else [j.recipient for j in spool.jobs_for(fax.id)]
        if not recipients:
            print(f"error: fax {fax.id} has no recipient yet: give one with --to", file=sys.stderr)
            return 1
        status = 0
        for rcpt in recipients:
            why = (
                f"{rcpt!r} is not a mail address: {bad}"
                if (bad := address_problem(rcpt))
                else cfg.routing.refusal(rcpt)
            )
            if why:  # the daemon would refuse it too; say so now and queue nothing
                print(f"error: not sent: {why}", file=sys.stderr)
                status = 1
                continue
            try:
                job = spool.resend(fax.id, rcpt, time.time())
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                status = 1
                continue
            print(f"queued fax {fax.id} to {rcpt} as {job.message_id}")
    return status


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    load: Callable[[argparse.Namespace], Config],
    config_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    q = sub.add_parser("queue", help="list delivery jobs: state, attempts, next try, last error and advice")
    config_arguments(q)
    q.add_argument("--state", choices=JOB_STATES)
    q.set_defaults(func=lambda a: cmd_queue(a, load(a)))
    r = sub.add_parser("resend", help="queue a fax again (a new message, works while the daemon runs)")
    r.add_argument("fax", help="the fax's number, as 'faxbridge queue' and the web page show it")
    r.add_argument("--to", help="recipient (default: every recipient the fax had)")
    config_arguments(r)
    r.set_defaults(func=lambda a: cmd_resend(a, load(a)))

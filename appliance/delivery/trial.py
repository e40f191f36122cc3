"""One real fax message through the configured backend, now: ``faxbridge test-delivery`` and the web
UI's "Send a test message" (settings and wizard) both send it with ``send_trial``.

The installer's check that mail really reaches the mailbox: the message is built by the same
code as every received fax (same headers, a one-page demo TIFF), sent through the same backend,
and the outcome is printed in words: the server's acceptance, or its refusal with what to change
(``advice.py``).  Nothing is written to the spool.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance import localtime
from appliance.config import Config, address_problem
from appliance.delivery import oauth
from appliance.delivery.advice import advise_exception, advise_text
from appliance.delivery.errors import DeliveryError
from appliance.delivery.message import render_message
from appliance.delivery.queue import send_via_backend
from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.spool.states import FaxState
from appliance.spool.store import FaxRecord


def trial_fax() -> tuple[FaxRecord, bytes]:
    """A one-page demo fax as if just received (flagged as a test in TSI and line)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "test.tif"
        write_fax_tiff(demo_pages(1, STANDARD, seed=7), path, STANDARD)
        image = path.read_bytes()
    fax = FaxRecord(
        id=0,
        uid=f"test-{uuid.uuid4().hex[:8]}",
        state=FaxState.RECEIVED,
        created=time.time(),
        finished=time.time(),
        complete=True,
        line="test-delivery",
        call_id="test-delivery",
        caller_number="5550100",
        caller_name="Faxbridge test",
        called_number="",
        remote_ident="FAXBRIDGE TEST",
        pages=1,
        bit_rate=14400,
        resolution="204x98",
    )
    return fax, image


@dataclass(frozen=True)
class TrialOutcome:
    """How one test message went, in words with the secrets scrubbed."""

    #: the server's acceptance when it took the message, else None
    accepted: str | None
    #: why it was not taken: the server's or the sign-in's answer, or the local error
    error: str = ""
    #: what to change (advice.py)
    advice: str = ""
    #: the server or the sign-in refused it (a DeliveryError), rather than it not being sent at all
    refused: bool = False


def send_trial(cfg: Config, to: str, say: Callable[[str], None] | None = None) -> TrialOutcome:
    """One demo fax message to ``to`` through ``cfg``'s delivery (saved or not), now: the sign-in
    alone first when it uses OAuth2 (the step installers get wrong most), then the message.
    ``say`` hears each step as it starts (the command line prints them; the web page does not)."""
    fax, image = trial_fax()
    msg = render_message(
        fax,
        to,
        from_addr=cfg.delivery.from_,
        image=image,
        message_id=f"<{fax.uid}@faxbridge.test-delivery>",
        tz=localtime.zone(cfg.system.timezone),
    )
    scrub = cfg.delivery.scrub
    try:
        if cfg.delivery.uses_oauth:
            if say is not None:
                say(
                    f"getting a token for {cfg.delivery.scope} from {cfg.delivery.authority}/"
                    f"{cfg.delivery.tenant} as app {cfg.delivery.client_id} ..."
                )
            oauth.get_token(cfg.delivery)
            if say is not None:
                say("token: ok")
        if say is not None:
            say(f"sending a test fax message to {to} through {cfg.delivery.backend} ({_where(cfg, to)}) ...")
        accepted = send_via_backend(cfg.delivery, msg, to, cfg.path)
    except DeliveryError as e:
        text = scrub(str(e))
        return TrialOutcome(None, text, advise_text(text).text, refused=True)
    except (OSError, ValueError) as e:
        return TrialOutcome(None, scrub(str(e)), advise_exception(e).text)
    return TrialOutcome(scrub(accepted))


def _where(cfg: Config, to: str) -> str:
    """What the backend sends to, in words; direct and graph have no url."""
    if cfg.delivery.backend == "direct":
        from appliance.delivery.direct import mx_description

        return mx_description(cfg.delivery, to)
    if cfg.delivery.backend == "graph":
        return f"{cfg.delivery.graph_url} as {cfg.delivery.from_}"
    return cfg.delivery.url


def cmd_test_delivery(args: argparse.Namespace, cfg: Config) -> int:
    to = args.to or cfg.delivery.admin or cfg.routing.default
    if not to:
        print("error: no recipient: give --to ADDRESS (or set delivery.admin)", file=sys.stderr)
        return 2
    if why := address_problem(to):
        print(f"error: --to {to!r} is not a mail address: {why}", file=sys.stderr)
        return 2
    outcome = send_trial(cfg, to, say=print)
    if outcome.accepted is None:
        print(f"FAILED: {outcome.error}\n  what to change: {outcome.advice}")
        return 1
    print(f"accepted: {outcome.accepted}")
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    load: Callable[[argparse.Namespace], Config],
    config_arguments: Callable[[argparse.ArgumentParser], None],
) -> None:
    t = sub.add_parser("test-delivery", help="send one test fax message through the configured delivery now")
    t.add_argument("--to", help="recipient (default: delivery.admin, else routing.default)")
    config_arguments(t)
    t.set_defaults(func=lambda a: cmd_test_delivery(a, load(a)))

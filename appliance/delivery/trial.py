"""``faxbridge test-delivery``: one real fax message through the configured backend, now.

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
from pathlib import Path
from typing import Callable

from .. import localtime
from ..config import Config, address_problem
from ..fax.pages import STANDARD, write_fax_tiff
from ..fax.testpages import demo_pages
from ..spool.store import FaxRecord
from . import oauth
from .advice import advise_exception, advise_text
from .message import render_message
from .queue import send_via_backend
from .errors import DeliveryError


def trial_fax() -> tuple[FaxRecord, bytes]:
    """A one-page demo fax as if just received (flagged as a test in TSI and line)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "test.tif"
        write_fax_tiff(demo_pages(1, STANDARD, seed=7), path, STANDARD)
        image = path.read_bytes()
    fax = FaxRecord(id=0, uid=f"test-{uuid.uuid4().hex[:8]}", state="received", created=time.time(),
                    finished=time.time(), complete=True, line="test-delivery", call_id="test-delivery",
                    caller_number="5550100", caller_name="Faxbridge test", called_number="",
                    remote_ident="FAXBRIDGE TEST", pages=1, bit_rate=14400, resolution="204x98")
    return fax, image


def cmd_test_delivery(args: argparse.Namespace, cfg: Config) -> int:
    to = args.to or cfg.delivery.admin or cfg.routing.default
    if not to:
        print("error: no recipient: give --to ADDRESS (or set delivery.admin)", file=sys.stderr)
        return 2
    if why := address_problem(to):
        print(f"error: --to {to!r} is not a mail address: {why}", file=sys.stderr)
        return 2
    fax, image = trial_fax()
    msg = render_message(fax, to, from_addr=cfg.delivery.from_, image=image,
                         message_id=f"<{fax.uid}@faxbridge.test-delivery>",
                         tz=localtime.zone(cfg.system.timezone))
    where = cfg.delivery.url  # what the backend sends to; direct and graph have no url
    if cfg.delivery.backend == "direct":
        from .direct import mx_description
        where = mx_description(cfg.delivery, to)
    elif cfg.delivery.backend == "graph":
        where = f"{cfg.delivery.graph_url} as {cfg.delivery.from_}"
    if cfg.delivery.uses_oauth:  # the sign-in is the step installers get wrong most: check it alone first
        print(f"getting a token for {cfg.delivery.scope} from {cfg.delivery.authority}/{cfg.delivery.tenant} "
              f"as app {cfg.delivery.client_id} ...")
        try:
            oauth.get_token(cfg.delivery)
        except DeliveryError as e:
            print(f"FAILED: {_hide(cfg, str(e))}\n  what to change: {advise_text(str(e)).text}")
            return 1
        print("token: ok")
    print(f"sending a test fax message to {to} through {cfg.delivery.backend} ({where}) ...")
    try:
        accepted = send_via_backend(cfg.delivery, msg, to, cfg.path)
    except DeliveryError as e:
        print(f"FAILED: {_hide(cfg, str(e))}\n  what to change: {advise_text(str(e)).text}")
        return 1
    except (OSError, ValueError) as e:
        print(f"FAILED: {_hide(cfg, str(e))}\n  what to change: {advise_exception(e).text}")
        return 1
    print(f"accepted: {_hide(cfg, accepted)}")
    return 0


def _hide(cfg: Config, text: str) -> str:
    return cfg.delivery.scrub(text)


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
               load: Callable[[argparse.Namespace], Config],
               config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    t = sub.add_parser("test-delivery", help="send one test fax message through the configured delivery now")
    t.add_argument("--to", help="recipient (default: delivery.admin, else routing.default)")
    config_arguments(t)
    t.set_defaults(func=lambda a: cmd_test_delivery(a, load(a)))


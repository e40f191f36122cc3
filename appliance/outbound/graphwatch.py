"""Mail to fax for Exchange Online: watch one shared mailbox through Microsoft Graph.

The box is usually not reachable from the internet, so Exchange Online cannot hand it mail;
instead the box polls ``outbound.graph_mailbox`` (every ``outbound.graph_poll_seconds``) with
the app registration the delivery side already uses (``[delivery]`` tenant, client id, secret or
certificate; ``delivery/oauth.py`` for tokens, ``delivery/graph.py``'s client for requests, its
throttling waits and error words), which needs ``Mail.ReadWrite`` on that mailbox (an
application access policy can hold it to that one mailbox).

Which mail is a fax (``mailparse`` does the rest, as for the SMTP listener):

* the number: each To/Cc address ``<mailbox>+<number>@<domain>`` (``fax+5551234@contoso.com``;
  ``fax++15551234@`` for +15551234), else a subject starting ``fax to <number>`` or
  ``fax: <number>`` (``fax <number>`` too; a reply's ``RE:`` never counts);
* the sender: the From address, who gets the report; only mail Exchange authenticated as from
  inside the organisation (``X-MS-Exchange-Organization-AuthAs: Internal``, which Exchange
  removes from mail arriving from outside, so it cannot be forged) and matching
  ``outbound.allowed_senders`` when that is set. Other mail is filed as refused, unanswered:
  a reply to a forged sender would be spam (backscatter). Automatic mail (out-of-office,
  reports, bounces) is filed unanswered too, so two robots never answer each other.

Each message ends in a folder: ``Faxbridge/Sent to fax`` once every number is queued,
``Faxbridge/Refused`` otherwise (both made when missing), marked read there; a refusal is
answered with a reply naming the reason. Crash safety: a message is moved only after its jobs
are queued, and every job carries ``meta["idempotency_key"] = "graph:<immutable id>:<number>"``
(ids are requested as ImmutableId, so they survive the move): a message seen again after a crash
between queueing and moving must not be queued twice, which the queue's submit ensures by
returning the existing job for a key it already holds. A crash after the reply and before the
move may send the reply twice; nothing is lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from appliance.config import Config, DeliveryConfig
from appliance.delivery import graph
from appliance.delivery.errors import DeliveryError, TemporaryDeliveryError
from appliance.outbound.mailparse import (
    ACCEPTED_WORDS,
    MailFax,
    MailRefused,
    ParsedMail,
    number_from_plus_address,
    number_from_subject,
    parse_message,
    raw_limit,
    reply_text,
    sender_allowed,
)

log = logging.getLogger("faxbridge.outbound.graphwatch")

#: what the watcher hands each number of an accepted mail to (see mailin.Submit); ValueError =
#: refused for good, anything else = try the message again at the next poll
Submit = Callable[[MailFax, str], Awaitable[str]]

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
#: unread messages taken per poll (the rest wait for the next)
PAGE = 10
#: numbers one mail may fax to
MAX_NUMBERS = 10
FOLDER = "Faxbridge"
SENT_FOLDER = "Sent to fax"
REFUSED_FOLDER = "Refused"
#: ids that stay the same when a message moves: the idempotency key must survive the move
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


@dataclass
class Handled:
    """What became of one message, for the log, the status and the tests."""

    message_id: str
    sender: str
    queued: list[tuple[str, str]] = field(default_factory=list)  # (number, job uid)
    refused: list[str] = field(default_factory=list)  # reasons, one per refused number or for all
    answered: bool = False
    folder: str = ""


@dataclass
class WatchStats:
    polls: int = 0
    queued: int = 0
    refused: int = 0
    last_poll: float = 0.0
    last_error: str = ""


def graph_config(config: Config) -> DeliveryConfig:
    """The delivery side's app registration, pointed at the watched mailbox with Graph's scope."""
    d = config.delivery
    scope = d.oauth_scope if d.backend == "graph" and d.oauth_scope else GRAPH_SCOPE
    return dataclasses.replace(d, backend="graph", from_=config.outbound.graph_mailbox, oauth_scope=scope)


class GraphWatcher:
    """Polls ``outbound.graph_mailbox``; ``run()`` until cancelled, ``poll_once()`` for one pass.

    Graph's requests are blocking (requests): each runs in a worker thread, never on the loop;
    ``submit`` runs on the loop. ``fax.meta`` carries ``source="graph"``, ``auth``,
    ``message_id``, ``graph_message_id`` and ``idempotency_key``."""

    def __init__(self, config: Config, submit: Submit) -> None:
        self.config = config
        self.submit = submit
        self.mailbox = config.outbound.graph_mailbox
        self.cfg = graph_config(config)
        self.stats = WatchStats()
        self._folders: dict[str, str] = {}

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll until cancelled; a failed poll is logged and tried again after the period."""
        period = max(10, self.config.outbound.graph_poll_seconds)
        log.info("mail to fax: watching the mailbox %s through Graph every %d s", self.mailbox, period)
        while True:
            try:
                await self.poll_once()
            except DeliveryError as e:
                self.stats.last_error = str(e)[:300]
                log.warning("graph mailbox %s: %s; next try in %d s", self.mailbox, e, period)
            except Exception as e:  # the watcher outlives any one poll's failure
                self.stats.last_error = f"{type(e).__name__}: {e}"[:300]
                log.exception("graph mailbox %s: poll failed; next try in %d s", self.mailbox, period)
            await asyncio.sleep(period)

    async def poll_once(self) -> list[Handled]:
        """One pass over the unread messages of the inbox (at most PAGE). A message whose handling
        fails for a temporary reason (Graph unreachable, the queue's submit raising anything but
        ValueError) stays unread in the inbox for the next poll; the others go on."""
        self.stats.polls += 1
        self.stats.last_poll = time.time()
        listing = await asyncio.to_thread(self._list_unread)
        done = []
        errors = []
        for item in listing:
            mid = item.get("id")
            if not isinstance(mid, str) or not mid:
                continue
            try:
                done.append(await self.handle(mid))
            except Exception as e:  # noqa: BLE001 - one message's trouble must not hold up the others
                errors.append(f"{type(e).__name__}: {e}"[:300])
                log.warning("graph mailbox %s: a message stays in the inbox for the next poll: %s", self.mailbox, e)
        self.stats.last_error = errors[-1] if errors else ""
        return done

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "mailbox": self.mailbox,
            "polls": s.polls,
            "queued": s.queued,
            "refused": s.refused,
            "last_poll": s.last_poll,
            "last_error": s.last_error,
        }

    # -- one message ----------------------------------------------------------------------------
    async def handle(self, mid: str) -> Handled:
        """Parse, queue each number, answer a refusal, file the message."""
        limit = raw_limit(self.config.outbound.max_bytes)
        raw = await asyncio.to_thread(self._mime, mid, limit)
        result = Handled(mid, "")
        parsed: ParsedMail | None = None
        try:
            if raw is None:
                raise MailRefused(f"the mail is too large; the attachments of one fax may have at most {_mb(limit)}")
            parsed = await asyncio.to_thread(parse_message, raw, max_bytes=self.config.outbound.max_bytes)
        except MailRefused as e:
            result.refused.append(str(e))
        if parsed is not None:
            result.sender = parsed.from_header
            why_silent = self._unanswerable(parsed)
            if why_silent:
                result.refused.append(why_silent)
                log.info("graph mailbox: message from %s filed unanswered: %s", parsed.from_header, why_silent)
                await asyncio.to_thread(self._file, mid, REFUSED_FOLDER, "")
                result.folder = REFUSED_FOLDER
                self.stats.refused += 1
                return result
            await self._queue(mid, parsed, result)
        else:  # unreadable or too large: answer only a sender Exchange vouches for
            sender, auth_as = await asyncio.to_thread(self._sender_facts, mid)
            result.sender = sender if auth_as.lower() == "internal" else ""
        answer = ""
        if result.refused:
            answer = _answer(result)
            result.answered = bool(result.sender)
        folder = SENT_FOLDER if result.queued else REFUSED_FOLDER
        await asyncio.to_thread(self._file, mid, folder, answer if result.answered else "")
        result.folder = folder
        self.stats.queued += len(result.queued)
        self.stats.refused += 0 if result.queued else 1
        return result

    def _unanswerable(self, parsed: ParsedMail) -> str:
        """Why this mail is filed without an answer, or ""."""
        if parsed.automatic:
            return "an automatic message (out-of-office, report or bounce)"
        if parsed.exchange_auth_as.lower() != "internal":
            return f"not sent from inside the organisation (AuthAs {parsed.exchange_auth_as or 'missing'})"
        if not sender_allowed(parsed.from_header, self.config.outbound.allowed_senders):
            return f"the sender {parsed.from_header} is not in outbound.allowed_senders"
        return ""

    async def _queue(self, mid: str, parsed: ParsedMail, result: Handled) -> None:
        numbers: list[str] = []
        subject = parsed.subject
        try:
            for address in parsed.recipients:
                n = number_from_plus_address(address, self.mailbox)
                if n is not None and n not in numbers:
                    numbers.append(n)
            if not numbers and (found := number_from_subject(parsed.subject)) is not None:
                numbers.append(found[0])
                subject = found[1]
        except MailRefused as e:
            result.refused.append(str(e))
            return
        if not numbers:
            local, _, domain = self.mailbox.partition("@")
            result.refused.append(
                f"no fax number found: send the mail to {local}+<number>@{domain} or write "
                f'"fax to <number>" at the start of the subject'
            )
            return
        if len(numbers) > MAX_NUMBERS:
            result.refused.append(f"a mail may go to at most {MAX_NUMBERS} fax numbers")
            return
        fax = dataclasses.replace(
            parsed.fax(tuple(numbers), parsed.from_header, source="graph", auth="exchange online (internal)"),
            subject=subject,
        )
        for number in numbers:
            one = fax.for_number(
                number,
                message_id=parsed.message_id,
                graph_message_id=mid,
                idempotency_key=f"graph:{mid}:{number}",
            )
            try:
                uid = await self.submit(one, parsed.from_header)
            except ValueError as e:
                result.refused.append(f"{number}: {e}")
                continue
            result.queued.append((number, uid))
            log.info("graph mailbox: mail from %s queued as fax %s to %s", parsed.from_header, uid, number)

    # -- Graph requests (in a worker thread) ----------------------------------------------------
    def _client(self) -> graph._Client:
        return graph._Client(self.cfg)

    def _list_unread(self) -> list[dict[str, Any]]:
        with self._client() as c:
            r = c.call(
                "GET",
                c.user("mailFolders/inbox/messages"),
                params={"$filter": "isRead eq false", "$top": str(PAGE), "$select": "id,subject,from"},
                headers=IMMUTABLE,
                expect=(200,),
            )
        value = graph._json(r).get("value")
        return [v for v in value if isinstance(v, dict)][:PAGE] if isinstance(value, list) else []

    def _mime(self, mid: str, limit: int) -> bytes | None:
        """The message as MIME, or None when it is larger than ``limit`` (read no further)."""
        with self._client() as c:
            r = c.call(
                "GET",
                c.user(f"messages/{quote(mid, safe='')}/$value"),
                headers=IMMUTABLE,
                stream=True,
                expect=(200,),
                where="GET message MIME",
            )
            try:
                data = bytearray()
                for chunk in r.iter_content(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        return None
                return bytes(data)
            finally:
                r.close()

    def _sender_facts(self, mid: str) -> tuple[str, str]:
        """(From address, X-MS-Exchange-Organization-AuthAs) of a message that could not be parsed."""
        with self._client() as c:
            r = c.call(
                "GET",
                c.user(f"messages/{quote(mid, safe='')}"),
                params={"$select": "from,internetMessageHeaders"},
                headers=IMMUTABLE,
                expect=(200,),
            )
        body = graph._json(r)
        sender = body.get("from")
        address = sender.get("emailAddress", {}).get("address") if isinstance(sender, dict) else None
        auth_as = ""
        for h in body.get("internetMessageHeaders") or []:
            if isinstance(h, dict) and str(h.get("name", "")).lower() == "x-ms-exchange-organization-authas":
                auth_as = str(h.get("value", ""))[:40]
        return (str(address)[:300] if isinstance(address, str) else ""), auth_as

    def _file(self, mid: str, folder: str, answer: str) -> None:
        """Reply (when there is an answer), move into the folder, mark read: in that order, so a
        crash leaves the message in the inbox (handled again) rather than lost."""
        with self._client() as c:
            path = f"messages/{quote(mid, safe='')}"
            if answer:
                c.call(
                    "POST", c.user(f"{path}/reply"), json={"comment": answer}, expect=(202,), where="POST message reply"
                )
            target = self._folder(c, folder)
            r = c.call(
                "POST",
                c.user(f"{path}/move"),
                json={"destinationId": target},
                headers=IMMUTABLE,
                expect=(200, 201),
                where="POST message move",
            )
            moved = graph._json(r).get("id")
            moved_path = f"messages/{quote(moved, safe='')}" if isinstance(moved, str) and moved else path
            c.call(
                "PATCH",
                c.user(moved_path),
                json={"isRead": True},
                headers=IMMUTABLE,
                expect=(200,),
                where="PATCH message isRead",
            )

    def _folder(self, c: graph._Client, name: str) -> str:
        """The id of Faxbridge/<name>, made when missing (remembered for the process)."""
        if name in self._folders:
            return self._folders[name]
        if FOLDER not in self._folders:
            self._folders[FOLDER] = self._child(c, "mailFolders", FOLDER)
        parent = quote(self._folders[FOLDER], safe="")
        self._folders[name] = self._child(c, f"mailFolders/{parent}/childFolders", name)
        return self._folders[name]

    def _child(self, c: graph._Client, collection: str, name: str) -> str:
        r = c.call("GET", c.user(collection), params={"$filter": f"displayName eq '{name}'"}, expect=(200,))
        value = graph._json(r).get("value")
        for item in value if isinstance(value, list) else []:
            if isinstance(item, dict) and item.get("displayName") == name and isinstance(item.get("id"), str):
                return str(item["id"])
        r = c.call("POST", c.user(collection), json={"displayName": name}, expect=(201,))
        made = graph._json(r).get("id")
        if not isinstance(made, str) or not made:
            raise TemporaryDeliveryError(f"graph: creating the folder {name!r} gave no id")
        log.info("graph mailbox %s: made the folder %s", self.mailbox, name)
        return made


def _answer(result: Handled) -> str:
    """The reply's text: what was not faxed and why, what was."""
    lines = ["This mail was not faxed." if not result.queued else "Part of this mail was not faxed."]
    lines += [f"- {reply_text(r, 500)}" for r in result.refused]
    if result.queued:
        lines.append("Queued: " + ", ".join(n for n, _ in result.queued) + " (you get a report when each is sent).")
    lines.append(f"The fax box accepts {ACCEPTED_WORDS} as attachments, or the text of the mail.")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"

"""The delivery settings' and the wizard's "Send a test message": the settings as typed (not
saved), through ``delivery/trial.py`` as ``faxbridge test-delivery`` sends it, in a worker thread
so a silent server costs the page at most ``TEST_MESSAGE_TIMEOUT``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from flask import request

from appliance.config import Config, ConfigError
from appliance.web.configpage import load_doc, page
from appliance.web.forms import apply_fields, form_values, secrets_state
from appliance.web.settings_fields import DELIVERY_FIELDS
from appliance.web.tomledit import ConfigDoc

#: the longest a "send a test message" may keep a page waiting, seconds
TEST_MESSAGE_TIMEOUT = 45.0


@dataclass
class TestOutcome:
    ok: bool
    summary: str
    detail: str = ""
    advice: str = ""


def send_test_message(cfg: Config, to: str, timeout: float = TEST_MESSAGE_TIMEOUT) -> TestOutcome:
    """One demo fax message through ``cfg``'s delivery (saved or not); the outcome in plain
    words, secrets scrubbed."""
    from appliance.delivery.advice import advise_text
    from appliance.delivery.trial import send_trial

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faxbridge-test-message")
    try:
        outcome = pool.submit(send_trial, cfg, to).result(timeout=timeout)
    except FutureTimeout:
        return TestOutcome(False, f"No answer within {timeout:g} seconds.", advice=advise_text("timed out").text)
    finally:
        pool.shutdown(wait=False)
    if outcome.accepted is None:
        summary = "The test message was not accepted." if outcome.refused else "The test message could not be sent."
        return TestOutcome(False, summary, outcome.error, outcome.advice)
    return TestOutcome(
        True, f"It works: the test message to {to} was accepted. Look for it in that mailbox.", outcome.accepted
    )


def default_recipient(doc: ConfigDoc) -> str:
    """Whom a test message goes to unless the owner types another address."""
    return str(doc.get("delivery", "admin") or doc.get("routing", "default") or "")


def delivery_test() -> Any:
    """Send a test message with the settings as typed (not saved)."""
    doc = load_doc()
    errors: list[str] = []
    apply_fields(doc, DELIVERY_FIELDS, request.form, errors)
    to = request.form.get("test_to", "").strip()
    outcome = None
    if not to or "@" not in to or any(c in to for c in "\r\n<>,; "):
        errors.append("test_to: give one mail address to send the test message to")
    if not errors:
        try:
            cfg = doc.validate()
        except ConfigError as e:
            errors = e.errors
        else:
            outcome = send_test_message(cfg, to)
    return page(
        "settings_delivery.html",
        "delivery",
        title="Delivery",
        intro="",
        fields=DELIVERY_FIELDS,
        values=form_values(DELIVERY_FIELDS, request.form),
        secrets=secrets_state(doc, DELIVERY_FIELDS),
        entries=(),
        rows={},
        errors=errors,
        test_to=to,
        outcome=outcome,
    )

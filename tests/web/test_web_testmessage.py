"""The web pages' "Send a test message" in words: what delivery/trial.send_trial found, or the
page's own time limit when the server stays silent."""

from __future__ import annotations

import threading

import pytest

from appliance.config import Config
from appliance.delivery import trial
from appliance.delivery.trial import TrialOutcome
from appliance.web.testmessage import send_test_message


@pytest.mark.parametrize("outcome, ok, summary", [
    (TrialOutcome("250 2.0.0 queued as 42"), True, "It works: the test message to a@example.com was accepted."),
    (TrialOutcome(None, "550 5.1.1 no such user", "check the address", refused=True), False,
     "The test message was not accepted."),
    (TrialOutcome(None, "[Errno 111] Connection refused", "nothing answers"), False,
     "The test message could not be sent."),
])
def test_each_outcome_in_words(monkeypatch: pytest.MonkeyPatch, outcome: TrialOutcome, ok: bool,
                               summary: str) -> None:
    monkeypatch.setattr(trial, "send_trial", lambda cfg, to: outcome)
    got = send_test_message(Config(), "a@example.com")
    assert (got.ok, got.summary.split(" Look")[0]) == (ok, summary)
    assert got.detail == (outcome.accepted or outcome.error) and got.advice == outcome.advice


def test_a_silent_server_costs_the_page_its_time_limit_only(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(trial, "send_trial", lambda cfg, to: release.wait(5) and TrialOutcome("late"))
    try:
        got = send_test_message(Config(), "a@example.com", timeout=0.05)
    finally:
        release.set()
    assert not got.ok and got.summary == "No answer within 0.05 seconds." and got.advice

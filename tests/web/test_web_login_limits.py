"""Guessing the password: a back-off per client address that doubles with each failure, in a
table of bounded size, no limit for all addresses together (anyone could lock the owner out with
it), and a bound on argon2 checks at once instead."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

from flask.testing import FlaskClient
from webauth import PASSWORD, csrf, login, store_for

from appliance.web.auth import (FIRST_DELAY, FORGET_AFTER, FREE_FAILURES, MAX_CHECKS, MAX_DELAY, LoginLimiter)


def _login(client: FlaskClient, password: str, addr: str):  # type: ignore[no-untyped-def]
    return client.post("/login", data={"password": password, "csrf_token": csrf(client)},
                       environ_base={"REMOTE_ADDR": addr})


def test_failures_from_many_addresses_do_not_lock_the_owner_out(anon_client: FlaskClient) -> None:
    """40 hosts guessing once each (more than the old global limit of 30) leave the owner's own
    address free to log in."""
    store_for(anon_client).set_password(PASSWORD)
    for i in range(40):
        r = _login(anon_client, "a wrong guess", f"10.0.{i // 250}.{i % 250 + 1}")
        assert r.status_code == 401, (i, r.status_code)
    owner = anon_client.application.test_client()
    r = _login(owner, PASSWORD, "192.168.1.20")
    assert r.status_code == 302, r.get_data(as_text=True)


def test_the_wait_doubles_with_each_failure_up_to_a_cap() -> None:
    lim, addr, now = LoginLimiter(), "192.0.2.7", 1000.0
    for _ in range(FREE_FAILURES - 1):
        lim.failed(addr, now)
        assert lim.wait(addr, now) == 0.0  # typos cost nothing
    waits = []
    for _ in range(20):
        lim.failed(addr, now)
        waits.append(lim.wait(addr, now))
        now += waits[-1]  # the guesser waits exactly as long as told, then fails again
        assert lim.wait(addr, now) == 0.0
    assert waits[:4] == [FIRST_DELAY, 2 * FIRST_DELAY, 4 * FIRST_DELAY, 8 * FIRST_DELAY]
    assert max(waits) == MAX_DELAY and waits[-1] == MAX_DELAY
    assert lim.wait("192.0.2.8", now) == 0.0  # another address is not affected
    lim.succeeded(addr)
    assert lim.wait(addr, now) == 0.0
    lim.failed(addr, now)
    assert lim.wait(addr, now) == 0.0  # counting starts again after a success


def test_an_address_is_forgotten_a_day_after_its_last_failure() -> None:
    lim, now = LoginLimiter(), 0.0
    for _ in range(FREE_FAILURES + 2):
        lim.failed("a", now)
    assert lim.wait("a", now) == 4 * FIRST_DELAY
    lim.failed("b", now + FORGET_AFTER + 1)  # any later failure prunes the quiet ones
    assert len(lim) == 1 and lim.wait("a", now + FORGET_AFTER + 1) == 0.0


def test_the_table_of_addresses_is_bounded() -> None:
    lim = LoginLimiter(max_addresses=1000)
    for i in range(50_000):
        lim.failed(f"2001:db8::{i:x}", float(i))
    assert len(lim) == 1000
    for _ in range(FREE_FAILURES):
        lim.failed("2001:db8::ffff:1", 50_000.0)
    assert lim.wait("2001:db8::ffff:1", 50_000.0) > 0  # the latest guesser is remembered


def test_only_a_few_argon2_checks_run_at_once(anon_client: FlaskClient) -> None:
    """With every turn taken, a login waits briefly, then gets 503 with Retry-After and words."""
    store = store_for(anon_client)
    store.set_password(PASSWORD)
    store.busy_wait = 0.5
    with ExitStack() as held:
        for _ in range(MAX_CHECKS):
            held.enter_context(store.check_slot())
        t0 = time.monotonic()
        r = _login(anon_client, PASSWORD, "192.168.1.20")
        waited = time.monotonic() - t0
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
        assert "busy checking other passwords" in r.get_data(as_text=True)
        assert waited >= store.busy_wait
        # a turn that frees up while the request waits serves it
        release = threading.Timer(0.2, held.close)
        store.busy_wait = 5.0
        release.start()
        r = _login(anon_client, PASSWORD, "192.168.1.20")
        release.join()
    assert r.status_code == 302
    # not counted as a failed guess either: the limiter is untouched
    assert anon_client.application.extensions["faxbridge_login_limiter"].wait("192.168.1.20") == 0.0


def test_the_other_password_forms_answer_busy_too(client: FlaskClient) -> None:
    store = store_for(client)
    store.busy_wait = 0.1
    with ExitStack() as held:
        for _ in range(MAX_CHECKS):
            held.enter_context(store.check_slot())
        r = client.post("/account/password", data={"current": PASSWORD, "password": "another long one",
                                                  "confirm": "another long one", "csrf_token": csrf(client)})
        assert r.status_code == 503 and "busy checking" in r.get_data(as_text=True)
        r = client.post("/settings/backup/encrypted",  # scrypt takes one of the same turns
                        data={"passphrase": "a long backup passphrase", "confirm": "a long backup passphrase",
                              "csrf_token": csrf(client)})
        assert r.status_code == 503 and "busy checking" in r.get_data(as_text=True)
    assert store.verify(PASSWORD)
    login(client)

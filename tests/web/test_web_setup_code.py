"""The first-start page asks for the one-time setup code (appliance/web/setupcode.py)."""

from __future__ import annotations

import re
from pathlib import Path

from flask.testing import FlaskClient
from webauth import PASSWORD, csrf, setup_code, store_for

from appliance.config import Config
from appliance.web import setupcode
from appliance.web.app import create_app
from appliance.web.auth import FREE_FAILURES, AdminStore


def _setup(client: FlaskClient, **extra: str):  # type: ignore[no-untyped-def]
    return client.post("/setup", data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": csrf(client),
                                       **extra})


def test_a_box_without_a_password_has_a_code_from_the_start(anon_client: FlaskClient, config: Config) -> None:
    state = config.path(config.web.state_dir)
    code = setupcode.read(state)
    assert code and re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", code)
    assert setupcode.path(state).stat().st_mode & 0o777 == 0o600
    page = anon_client.get("/setup").get_data(as_text=True)
    assert 'name="setup_code"' in page and "setup-code.txt" in page
    assert code not in page  # the page asks for it; it never tells it


def test_setup_is_refused_without_the_code_or_with_a_wrong_one(anon_client: FlaskClient) -> None:
    for extra in ({}, {"setup_code": ""}, {"setup_code": "AAAA-AAAA-AAAA"},
                  {"setup_code": setup_code(anon_client)[:-1]}):
        r = _setup(anon_client, **extra)
        assert r.status_code == 403 and "The setup code is wrong" in r.get_data(as_text=True), extra
    assert not store_for(anon_client).has_password()
    assert anon_client.get("/faxes").headers["Location"].endswith("/setup")


def test_wrong_codes_back_off_like_wrong_passwords(anon_client: FlaskClient) -> None:
    for _ in range(FREE_FAILURES):
        assert _setup(anon_client, setup_code="AAAA-AAAA-AAAA").status_code == 403
    r = _setup(anon_client, setup_code=setup_code(anon_client))  # even the right one waits now
    assert r.status_code == 429 and "Too many wrong setup codes" in r.get_data(as_text=True)
    assert int(r.headers["Retry-After"]) >= 1
    assert not store_for(anon_client).has_password()


def test_the_right_code_sets_the_password_and_is_void_after(anon_client: FlaskClient, config: Config,
                                                            tmp_path: Path) -> None:
    state = config.path(config.web.state_dir)
    code = setup_code(anon_client)
    on_card = tmp_path / "boot" / "setup-code.txt"
    on_card.parent.mkdir()
    on_card.write_text(code)
    setupcode.store(state, code, [on_card])
    # as typed off a screen: lower case, spaces for dashes
    r = _setup(anon_client, setup_code=code.lower().replace("-", " "))
    assert r.status_code == 302 and r.headers["Location"].endswith("/setup/system")
    assert store_for(anon_client).verify(PASSWORD)
    assert setupcode.read(state) is None and not setupcode.path(state).exists() and not on_card.exists()
    # the page is closed; the old code opens nothing
    fresh = create_app(config).test_client()
    assert fresh.get("/setup").headers["Location"].endswith("/login")
    assert _setup(fresh, setup_code=code).headers["Location"].endswith("/login")
    assert setupcode.read(state) is None  # a restart with a password makes no new code


def test_a_password_pre_seeded_in_faxbridge_txt_means_no_first_start_page(config: Config) -> None:
    state = config.path(config.web.state_dir)
    AdminStore(state).set_password(PASSWORD)  # what firstboot does with admin_password
    client = create_app(config).test_client()
    assert setupcode.read(state) is None
    assert client.get("/setup").headers["Location"].endswith("/login")
    r = client.post("/login", data={"password": PASSWORD, "csrf_token": csrf(client)})
    assert r.status_code == 302


def test_codes_are_short_unambiguous_and_different() -> None:
    codes = {setupcode.new_code() for _ in range(200)}
    assert len(codes) == 200
    for c in codes:
        assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", c)
        assert not set(c) & set("01OIL25SZ8B")
    assert setupcode.matches(" k7fq mwxa-3trc ", "K7FQ-MWXA-3TRC")
    assert not setupcode.matches("K7FQ-MWXA-3TR", "K7FQ-MWXA-3TRC")
    assert not setupcode.matches("", "K7FQ-MWXA-3TRC")


def test_processes_starting_at_once_agree_on_one_code(tmp_path: Path) -> None:
    """The daemon (its banner) and the web UI (its page) each ask for the code as they start."""
    import subprocess
    import sys

    state = tmp_path / "web"
    script = "import sys; from appliance.web import setupcode; print(setupcode.ensure(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(state)], stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    codes = {p.communicate()[0].strip() for p in procs}
    assert codes == {setupcode.read(state)}
    assert [p.name for p in state.iterdir()] == ["setup-code.json"]


def test_a_damaged_code_file_is_replaced(tmp_path: Path) -> None:
    setupcode.path(tmp_path).write_text("{not json")
    code = setupcode.ensure(tmp_path)
    assert code and setupcode.read(tmp_path) == code

"""The delivery settings page says which STARTTLS policy is in effect (its default depends on the
server) and offers the default itself as a choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from webauth import login

from appliance.config import Config
from appliance.web.app import create_app


@pytest.mark.parametrize("delivery, shown", [
    ('url = "smtp://mail.example.com:587"', "required (the default: mail.example.com is not on this box)"),
    ('url = "smtp://localhost:25"', "opportunistic (the default: localhost is on this box (loopback))"),
    ('url = "smtp://mail.example.com:587"\nstarttls = "none"', "none (set in delivery.starttls)"),
])
def test_the_page_shows_the_policy_in_effect(tmp_path: Path, delivery: str, shown: str) -> None:
    box = tmp_path / "faxbridge.toml"
    box.write_text(f'[spool]\ndir = "spool"\n[delivery]\nbackend = "smtp"\n{delivery}\nfrom = "fax@example.com"\n')
    client: FlaskClient = create_app(Config.load(box)).test_client()
    login(client)
    page = client.get("/settings/delivery").get_data(as_text=True)
    assert f'<p class="muted" id="starttls-in-effect">STARTTLS in effect: {shown}</p>' in page
    assert '<option value="">(default)</option>' in page or '<option value="" selected>(default)</option>' in page

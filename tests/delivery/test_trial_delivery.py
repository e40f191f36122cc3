"""``faxbridge test-delivery`` as a subprocess against a real SMTP server on loopback: the test
message is a fax message like any other (headers, one TIFF page); a refusal says what to change
and never shows the password."""

from __future__ import annotations

import email
import email.policy
import io

from PIL import Image

from smtp_harness import PASSWORD
from test_queue_cli import faxbridge, write_config


def test_test_delivery_sends_a_real_fax_message(tmp_path, smtp_server):
    server = smtp_server(auth=True, auth_require_tls=False)
    cfg = write_config(tmp_path, server.port, PASSWORD)
    out = faxbridge("test-delivery", "--config", str(cfg), "--to", "it@example.com")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "accepted: 250" in out.stdout
    (sent,) = server.handler.messages
    assert sent["to"] == ["it@example.com"] and sent["auth"]
    msg = email.message_from_bytes(sent["data"], policy=email.policy.default)
    assert msg["Content-Class"] == "fax-ca" and msg["X-FaxNumberOfPages"] == "1"
    (tif,) = [p for p in msg.iter_attachments() if p.get_content_type() == "image/tiff"]
    with Image.open(io.BytesIO(tif.get_content())) as im:
        assert im.size[0] == 1728
    assert PASSWORD not in out.stdout + out.stderr


def test_test_delivery_refused_says_what_to_change_without_the_password(tmp_path, smtp_server):
    server = smtp_server(auth=True, auth_require_tls=False)
    wrong = "Wr0ng-" + PASSWORD
    cfg = write_config(tmp_path, server.port, wrong)
    out = faxbridge("test-delivery", "--config", str(cfg))  # to delivery.admin
    assert out.returncode == 1
    assert "FAILED: 535" in out.stdout and "what to change:" in out.stdout and "secrets.toml" in out.stdout
    assert wrong not in out.stdout + out.stderr and not server.handler.messages

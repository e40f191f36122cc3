"""The advice table: each reply admins really get from Exchange Online says what to change."""

from __future__ import annotations

import ssl

import pytest

from appliance.delivery.advice import advise_exception, advise_reply, advise_text, with_advice

CASES = [
    # (reply as recorded, words the advice must contain, permanent)
    ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
     "Set-CASMailbox", True),
    ("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.",
     "Security Defaults", True),
    ("535 5.7.3 Authentication unsuccessful", "delivery.username", True),
    ("535 5.7.8 Error: authentication failed", "secrets.toml", True),
    ("550 5.7.30 Basic authentication is not supported for Client Submission.", "OAuth2", True),
    ("550 5.7.60 SMTP; Client does not have permissions to send as this sender", "delivery.from", True),
    ("421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.",
     "TLS 1.2", True),
    ("550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization",
     "inbound connector", True),
    ("554 5.6.211 Invalid MIME Content: Message size exceeds limit", "max_message_bytes", True),
    ("552 5.3.4 Message size exceeds fixed maximum message size", "max_message_bytes", True),
    ("451 4.7.500 Server busy. Please try again later.", "throttling", False),
    ("535 5.7.3 AADSTS7000215: Invalid client secret provided.", "Value (not its ID)", True),
    ("AADSTS7000222: The provided client secret keys for app are expired.", "expired", True),
    ("AADSTS700027: Client assertion contains an invalid signature.", "certificate", True),
    ("AADSTS90002: Tenant 'contoso.example' not found.", "tenant ID", True),
    ("smtp://127.0.0.1:2525: cannot connect: Connection refused", "delivery.url", False),
    ("smtp://127.0.0.1:2525: TLS certificate not trusted: self-signed certificate", "delivery.ca_file", True),
    ("smtp://127.0.0.1:2525: TLS handshake failed: WRONG_VERSION_NUMBER", "TLS 1.2", False),
]


@pytest.mark.parametrize("reply,words,permanent", CASES, ids=[c[0][:24] for c in CASES])
def test_advice_table(reply: str, words: str, permanent: bool) -> None:
    advice = advise_text(reply)
    assert words in advice.text
    assert advice.permanent is permanent


def test_reply_parts_and_unknown_codes() -> None:
    assert "Set-CASMailbox" in advise_reply(535, "5.7.139", "Authentication unsuccessful").text
    assert advise_reply(452, "4.3.1", "Insufficient system storage").permanent is False
    assert advise_reply(550, "5.7.1", "Unable to relay").permanent is True
    assert "resend" in advise_reply(550, "5.7.1", "Unable to relay").text


def test_exceptions() -> None:
    assert "delivery.url" in advise_exception(ConnectionRefusedError(111, "Connection refused")).text
    err = ssl.SSLCertVerificationError(1, "certificate verify failed")
    err.verify_message = "unable to get local issuer certificate"
    assert advise_exception(err).permanent
    assert "disk space" in advise_exception(OSError(28, "No space left on device")).text


def test_recorded_form_keeps_the_reply_first() -> None:
    text = with_advice("550 5.7.60 denied (smtp://x:25)", advise_text("550 5.7.60 denied"))
    assert text.startswith("550 5.7.60 denied (smtp://x:25) -- advice: ")

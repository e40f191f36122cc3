"""Exchange UM fax referral: msExchUMFaxRecipient / msExchUMContext in Referred-By (exchange.md §1.4).

These are the parser's and the user agent's tests: they read every referral.  Whether the daemon
honours one depends on the peer it came from (``exchange_um = true``) and on
routing.accepted_domains: tests/routing/test_um_trust.py and tests/e2e.
"""
from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from appliance.sip.callinfo import MAX_CONTEXT, parse_exchange_referral
from appliance.sip.events import ExchangeUmReferral, IncomingCall
from appliance.sip.useragent import UserAgent

from sip_helpers import LOCAL, OFFER, PEER, events, raw

# what UMPartnerFaxContext.ToString() produces: a URL-encoded query string, base64 of its UTF-8
QUERY = ("CallId=8f3a%40gw.contoso.com&CallerId=%2B4930111222&Extension=4711"
         "&PhoneContext=FaxDialPlan.contoso.com&CallerIdDisplayName=M%C3%BCller+GmbH")
CONTEXT = base64.b64encode(QUERY.encode()).decode()
EXPECTED = {"CallId": "8f3a@gw.contoso.com", "CallerId": "+4930111222", "Extension": "4711",
            "PhoneContext": "FaxDialPlan.contoso.com", "CallerIdDisplayName": "Müller GmbH"}


def test_uri_parameters_inside_brackets_url_escaped_context() -> None:
    value = (f"<sip:um01.contoso.com;msExchUMFaxRecipient=smtp:bob@contoso.com;"
             f"msExchUMContext={quote(CONTEXT, safe='')}>")
    assert "%3D" in value or "%2B" in value or "%2F" in value  # the escaping is really exercised
    um = parse_exchange_referral(value)
    assert um == ExchangeUmReferral("bob@contoso.com", CONTEXT, EXPECTED, [])


def test_header_parameters_after_brackets() -> None:
    value = f'"UM" <sip:um01.contoso.com>;msExchUMFaxRecipient=smtp:alice@fabrikam.example;msExchUMContext={CONTEXT}'
    um = parse_exchange_referral(value)
    assert um is not None and um.recipient == "alice@fabrikam.example" and um.context == EXPECTED


def test_no_brackets_and_odd_case() -> None:
    value = f"sip:um01.contoso.com;MSEXCHUMFAXRECIPIENT=SMTP:carol@contoso.com;msexchumcontext={CONTEXT}"
    um = parse_exchange_referral(value)
    assert um is not None and um.recipient == "carol@contoso.com" and um.context_raw == CONTEXT


def test_key_colon_value_context_and_unknown_keys() -> None:
    ctx = base64.b64encode(b"CallId:abc;CallerId:+4930;Extension:12;Future:x=y").decode()
    um = parse_exchange_referral(f"<sip:um;msExchUMFaxRecipient=smtp:bob@contoso.com;msExchUMContext={ctx}>")
    assert um is not None and um.context == {"CallId": "abc", "CallerId": "+4930", "Extension": "12", "Future": "x=y"}
    unknown = base64.b64encode(b"CallId=1&TenantGuid=42").decode()
    um = parse_exchange_referral(f"<sip:um;msExchUMContext={unknown}>")
    assert um is not None and um.context == {"CallId": "1", "TenantGuid": "42"}
    assert um.recipient == "" and "no msExchUMFaxRecipient" in um.notes


def test_context_without_padding_is_accepted() -> None:
    ctx = base64.b64encode(b"CallId=1234").decode()
    assert ctx.endswith("=")
    um = parse_exchange_referral(f"<sip:um;msExchUMContext={ctx.rstrip('=')}>")
    assert um is not None and um.context == {"CallId": "1234"}


@pytest.mark.parametrize("value", [
    "", "<sip:um01.contoso.com>", "<sip:bob@contoso.com>;cid=1", "garbage <<<>>> ;;;",
    "<sip:um;msExchUMFaxRecipient>",  # a bare flag carries nothing
])
def test_not_an_exchange_referral(value: str) -> None:
    assert parse_exchange_referral(value) is None


@pytest.mark.parametrize("recipient", [
    "bob@contoso.com%0D%0ABcc:%20evil@x.example",     # escaped CRLF: header injection
    "bob@contoso.com%0A",
    "x500:/o=Contoso/ou=Exchange/cn=bob",
    "bob@contoso.com",                                 # no smtp: prefix
    "smtp:bob",                                        # no domain
    "smtp:bob@localhost",                              # not a plain internet address
    "smtp:bob smith@contoso.com",
    "smtp:bob@contoso.com,eve@x.example",
    "smtp:" + "a" * 65 + "@contoso.com",
    "smtp:bob@" + "d" * 250 + ".com",
    "smtp:bob@-contoso.com",
])
def test_hostile_or_foreign_recipient_ignored(recipient: str) -> None:
    um = parse_exchange_referral(f"<sip:um;msExchUMFaxRecipient={recipient};msExchUMContext={CONTEXT}>")
    assert um is not None and um.recipient == "" and um.notes
    assert um.context == EXPECTED  # the context is still good


def test_recipient_in_angle_brackets_ignored() -> None:
    um = parse_exchange_referral("<sip:um;msExchUMFaxRecipient=smtp:<bob@contoso.com>;msExchUMContext=QUJD>")
    assert um is not None and um.recipient == "" and um.notes


def test_escaped_recipient_is_unescaped() -> None:
    um = parse_exchange_referral("<sip:um;msExchUMFaxRecipient=smtp:bob%40contoso.com>")
    assert um is not None and um.recipient == "bob@contoso.com"


@pytest.mark.parametrize("context,raw_kept", [
    ("not*base64!", False),
    ("QUJD%0D%0AX-Evil:1", False),                 # CRLF hidden in the escaping
    ("A" * (MAX_CONTEXT + 4), False),              # huge
    ("QUJDR", True),                               # base64 alphabet, but a length that cannot decode
    (base64.b64encode(b"\xff\xfe\x00bad").decode(), True),  # not UTF-8
])
def test_bad_context(context: str, raw_kept: bool) -> None:
    um = parse_exchange_referral(f"<sip:um;msExchUMFaxRecipient=smtp:bob@contoso.com;msExchUMContext={context}>")
    assert um is not None and um.recipient == "bob@contoso.com"
    assert um.context == {} and um.notes
    assert um.context_raw == (context if raw_kept else "")


def test_control_characters_stripped_from_decoded_values() -> None:
    ctx = base64.b64encode(b"CallId=1%0D%0ABcc%3A+x&CallerIdDisplayName=A\x07B").decode()
    um = parse_exchange_referral(f"<sip:um;msExchUMContext={ctx}>")
    assert um is not None and um.context == {"CallId": "1Bcc: x", "CallerIdDisplayName": "AB"}
    assert any("control characters" in n for n in um.notes)


def test_many_keys_capped() -> None:
    ctx = base64.b64encode("&".join(f"K{i}=v" for i in range(200)).encode()).decode()
    um = parse_exchange_referral(f"<sip:um;msExchUMContext={ctx}>")
    assert um is not None and len(um.context) == 32 and any("too many keys" in n for n in um.notes)


def test_incoming_call_carries_referral() -> None:
    agent = UserAgent(user_agent="fb")
    value = f"<sip:um01.contoso.com;msExchUMFaxRecipient=smtp:bob@contoso.com;msExchUMContext={quote(CONTEXT, safe='')}>"
    agent.receive(raw("INVITE", extra=[f"Referred-By: {value}", "Content-Type: application/sdp"], body=OFFER),
                  PEER, LOCAL, 0.0)
    [event] = events(agent)
    assert isinstance(event, IncomingCall)
    assert event.referred_by == value
    assert event.exchange_um is not None and event.exchange_um.recipient == "bob@contoso.com"
    assert event.exchange_um.context["Extension"] == "4711"


def test_incoming_call_compact_form_and_none() -> None:
    agent = UserAgent(user_agent="fb")
    agent.receive(raw("INVITE", extra=["b: <sip:um;msExchUMFaxRecipient=smtp:bob@contoso.com>"]), PEER, LOCAL, 0.0)
    [event] = events(agent)
    assert event.exchange_um is not None and event.exchange_um.recipient == "bob@contoso.com"
    agent.receive(raw("INVITE", branch="z9hG4bK2", call_id="raw-2@peer"), PEER, LOCAL, 0.0)
    [event] = events(agent)
    assert event.referred_by == "" and event.exchange_um is None


def test_huge_referred_by_does_not_hurt() -> None:
    value = "<sip:um;msExchUMFaxRecipient=smtp:bob@contoso.com;msExchUMContext=" + "QUJD" * 1900 + ">"
    agent = UserAgent(user_agent="fb")
    agent.receive(raw("INVITE", extra=[f"Referred-By: {value}"]), PEER, LOCAL, 0.0)
    [event] = events(agent)
    assert event.exchange_um is not None and event.exchange_um.context_raw == ""
    assert event.exchange_um.recipient == "bob@contoso.com"

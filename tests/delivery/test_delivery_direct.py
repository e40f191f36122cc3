"""The direct backend against a real DNS server and real SMTP servers, all on 127.0.0.1.

The DNS server is a few lines of UDP answering from a table with dnspython's message API; the
MX hosts are aiosmtpd servers whose certificates name the MX host, so a verified STARTTLS also
proves which MX the client believed it was talking to.  Every MX host resolves to 127.0.0.1
(the tests touch no other address); "down" is played by a front on the port that hangs up on
the first connection(s) and relays the rest.
"""

from __future__ import annotations

import email
import email.policy
import random
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from appliance.config import Config, DeliveryConfig
from appliance.delivery.advice import advise_text
from appliance.delivery.direct import order_mx, send_direct
from appliance.delivery.message import render_message
from appliance.delivery.queue import send_via_backend
from appliance.delivery.errors import PermanentDeliveryError, TemporaryDeliveryError
from appliance.spool.store import FaxRecord
from smtp_harness import Capture, free_port
from test_queue_cli import faxbridge
from tests.budgets import LOADED

LOCAL = "127.0.0.1"


class DnsServer:
    """A UDP DNS server on 127.0.0.1 answering from ``records`` ({name: {type: [rdata text]}}).

    A name not in the table is NXDOMAIN; a known name without the asked type is an empty
    NOERROR answer; ``servfail`` names get SERVFAIL; ``silent`` drops every query.
    """

    def __init__(self, records: dict[str, dict[str, list[str]]], *, silent: bool = False,
                 servfail: tuple[str, ...] = ()):
        self.records = {k.lower().rstrip("."): v for k, v in records.items()}
        self.silent = silent
        self.servfail = {n.lower().rstrip(".") for n in servfail}
        self.queries: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCAL, 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            reply = self.answer(wire)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def answer(self, wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        if self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif self.records[name].get(rdtype):
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", rdtype,
                                                            self.records[name][rdtype]))
        return response.to_wire()

    def looked_up(self, rdtype: str) -> list[str]:
        return [n for n, t in self.queries if t == rdtype]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def dns_server() -> Iterator[Callable[..., DnsServer]]:
    started: list[DnsServer] = []

    def start(records: dict[str, dict[str, list[str]]], **kw: Any) -> DnsServer:
        server = DnsServer(records, **kw)
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


class HangUpFront:
    """127.0.0.1:port in front of an SMTP server: the first ``drop`` connections are closed at
    once (an MX that is down), later ones are relayed byte for byte, STARTTLS included."""

    def __init__(self, backend_port: int, drop: int = 1):
        self.backend_port, self.drop, self.connections = backend_port, drop, 0
        self.listener = socket.create_server((LOCAL, 0))
        self.port: int = self.listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.drop:
                conn.close()
                continue
            upstream = socket.create_connection((LOCAL, self.backend_port))
            self._socks += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self._socks:
            s.close()


RCPT = "fax@one.test"


@pytest.fixture
def msg(tiff_bytes: bytes):
    fax = FaxRecord(id=1, uid="0123456789abcdef", state="routed", created=1_700_000_000.0, complete=True,
                    caller_number="5550100", pages=2)
    return render_message(fax, RCPT, from_addr="fax@example.com", image=tiff_bytes,
                          message_id="<0123456789abcdef.1@faxbridge>")


def direct_cfg(dns: DnsServer, port: int, **kw: Any) -> DeliveryConfig:
    base: dict[str, Any] = dict(backend="direct", from_="fax@example.com", starttls="opportunistic",
                                direct_port=port, dns_servers=[LOCAL], dns_port=dns.port, timeout=LOADED)
    base.update(kw)
    return DeliveryConfig(**base)


def zone(**names: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """zone(one_test={"MX": [...]}) -> {"one.test": {...}}: test names as keywords."""
    return {k.replace("_", "."): v for k, v in names.items()}


def test_delivers_to_the_mx_with_verified_starttls(dns_server, smtp_server, msg, ca_file, tiff_bytes):
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test."]}, mx1_one_test={"A": [LOCAL]}))
    server = smtp_server(starttls=True, names=("mx1.one.test",))
    reply = send_direct(direct_cfg(dns, server.port, ca_file=ca_file), msg, RCPT)
    assert reply.startswith("250 2.0.0 Ok")
    (m,) = server.handler.messages
    assert m["tls"] is True and m["to"] == [RCPT] and m["from"] == "fax@example.com" and not m["auth"]
    got = email.message_from_bytes(m["data"], policy=email.policy.default)
    assert got["Message-ID"] == "<0123456789abcdef.1@faxbridge>"
    (att,) = got.iter_attachments()
    assert att.get_content() == tiff_bytes
    assert dns.looked_up("MX") == ["one.test"] and "mx1.one.test" in dns.looked_up("A")


def test_required_starttls_verifies_the_mx_name_not_the_address(dns_server, smtp_server, msg, ca_file):
    """A certificate for 127.0.0.1 (the address) is not one for mx1.one.test: refused for good."""
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test."]}, mx1_one_test={"A": [LOCAL]}))
    server = smtp_server(starttls=True)  # certificate names only 127.0.0.1
    with pytest.raises(PermanentDeliveryError, match="certificate"):
        send_direct(direct_cfg(dns, server.port, ca_file=ca_file, starttls="required"), msg, RCPT)
    assert server.handler.messages == []


def test_client_certificate_is_presented(dns_server, smtp_server, msg, ca, ca_file, tmp_path):
    """delivery.tls_client_cert: what a partner connector matching the appliance's certificate sees."""
    class PeerCapture(Capture):
        async def handle_DATA(self, server, session, envelope):
            self.peercert = session.ssl.get("peercert") if session.ssl else None
            return await super().handle_DATA(server, session, envelope)

    client = ca.issue_cert("fax.example.com")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    for blob in client.cert_chain_pems:
        with cert.open("ab") as f:
            f.write(blob.bytes())
    client.private_key_pem.write_to_path(str(key))
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test."]}, mx1_one_test={"A": [LOCAL]}))
    handler = PeerCapture()
    server = smtp_server(starttls=True, names=("mx1.one.test",), handler=handler)
    ctx = server.controller.SMTP_kwargs["tls_context"]
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ca.configure_trust(ctx)
    send_direct(direct_cfg(dns, server.port, ca_file=ca_file, tls_client_cert=str(cert),
                           tls_client_key=str(key)), msg, RCPT)
    assert server.handler.messages[0]["tls"] is True
    assert handler.peercert and handler.peercert["subjectAltName"] == (("DNS", "fax.example.com"),)


def test_first_mx_down_second_used(dns_server, smtp_server, msg, ca_file):
    dns = dns_server(zone(two_test={"MX": ["10 mx1.two.test.", "20 mx2.two.test."]},
                          mx1_two_test={"A": [LOCAL]}, mx2_two_test={"A": [LOCAL]}))
    server = smtp_server(starttls=True, names=("mx2.two.test",))
    front = HangUpFront(server.port, drop=1)
    try:
        reply = send_direct(direct_cfg(dns, front.port, ca_file=ca_file, starttls="required"), msg,
                            "fax@two.test")
    finally:
        front.close()
    assert reply.startswith("250 ")
    assert front.connections == 2 and server.handler.messages[0]["tls"] is True
    # mx1 was tried first; the session that delivered verified the name mx2.two.test
    assert [n for n in dns.looked_up("A")] == ["mx1.two.test", "mx2.two.test"]


def test_lowest_preference_first(dns_server, smtp_server, msg, ca_file):
    """Listed worst first in DNS; only the preference-10 host is looked up and its name verified."""
    dns = dns_server(zone(pref_test={"MX": ["30 c.pref.test.", "10 a.pref.test.", "20 b.pref.test."]},
                          a_pref_test={"A": [LOCAL]}, b_pref_test={"A": [LOCAL]}, c_pref_test={"A": [LOCAL]}))
    server = smtp_server(starttls=True, names=("a.pref.test",))
    send_direct(direct_cfg(dns, server.port, ca_file=ca_file, starttls="required"), msg, "fax@pref.test")
    assert len(server.handler.messages) == 1
    assert dns.looked_up("A") == ["a.pref.test"]


def test_equal_preferences_are_shuffled_and_order_is_kept():
    records = [(20, "c"), (10, "a1"), (10, "a2"), (10, "a3"), (30, "d")]
    orders = {tuple(order_mx(records, random.Random(seed))) for seed in range(50)}
    assert all(o[3:] == ("c", "d") and set(o[:3]) == {"a1", "a2", "a3"} for o in orders)
    assert len({o[:3] for o in orders}) > 1


def test_no_mx_uses_the_domains_address_records(dns_server, smtp_server, msg, ca_file):
    """RFC 5321 5.1 implicit MX: only when the name has no MX records at all."""
    dns = dns_server(zone(bare_test={"A": [LOCAL]}))
    server = smtp_server(starttls=True, names=("bare.test",))
    send_direct(direct_cfg(dns, server.port, ca_file=ca_file), msg, "fax@bare.test")
    assert server.handler.messages[0]["tls"] is True


def test_no_mx_and_no_address_is_permanent(dns_server, msg):
    dns = dns_server(zone(empty_test={"TXT": ['"v=spf1 -all"']}))
    with pytest.raises(PermanentDeliveryError, match="empty.test has no MX and no A/AAAA"):
        send_direct(direct_cfg(dns, free_port()), msg, "fax@empty.test")


def test_null_mx_is_permanent(dns_server, msg):
    dns = dns_server(zone(nomail_test={"MX": ["0 ."], "A": [LOCAL]}))
    with pytest.raises(PermanentDeliveryError, match=r"nomail.test has a null MX \(RFC 7505\)") as e:
        send_direct(direct_cfg(dns, free_port()), msg, "fax@nomail.test")
    advice = advise_text(str(e.value))
    assert advice.permanent and "recipient" in advice.text
    assert dns.looked_up("A") == []  # never falls back to the domain's own address


def test_nxdomain_is_permanent_and_names_the_domain(dns_server, msg):
    dns = dns_server({})
    with pytest.raises(PermanentDeliveryError, match="recipient domain nosuch.test does not exist") as e:
        send_direct(direct_cfg(dns, free_port()), msg, "fax@nosuch.test")
    advice = advise_text(str(e.value))
    assert advice.permanent and "recipient" in advice.text


def test_silent_dns_server_is_temporary(dns_server, msg):
    dns = dns_server({}, silent=True)
    with pytest.raises(TemporaryDeliveryError, match="MX for one.test failed: no answer") as e:
        send_direct(direct_cfg(dns, free_port(), timeout=2), msg, RCPT)
    assert dns.queries and not advise_text(str(e.value)).permanent
    assert "delivery.dns_servers" in advise_text(str(e.value)).text


def test_servfail_is_temporary(dns_server, msg):
    dns = dns_server({}, servfail=("one.test",))
    with pytest.raises(TemporaryDeliveryError, match="SERVFAIL"):
        send_direct(direct_cfg(dns, free_port()), msg, RCPT)


def test_all_mx_unreachable_is_temporary(dns_server, msg):
    dns = dns_server(zone(two_test={"MX": ["10 mx1.two.test.", "20 mx2.two.test."]},
                          mx1_two_test={"A": [LOCAL]}, mx2_two_test={"A": [LOCAL]}))
    with pytest.raises(TemporaryDeliveryError, match="no MX host of two.test accepted the message") as e:
        send_direct(direct_cfg(dns, free_port()), msg, "fax@two.test")
    assert "mx1.two.test" in str(e.value) and "mx2.two.test" in str(e.value)
    advice = advise_text(str(e.value))
    assert not advice.permanent and "port 25" in advice.text


def test_direct_send_rejected_is_permanent_with_advice(dns_server, smtp_server, msg, ca_file):
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test.", "20 mx2.one.test."]},
                          mx1_one_test={"A": [LOCAL]}, mx2_one_test={"A": [LOCAL]}))
    handler = Capture(data_replies=["550 5.7.68 TenantInboundAttribution; Direct Send not allowed for "
                                    "this organization from unauthorized sources"])
    server = smtp_server(starttls=True, names=("mx1.one.test", "mx2.one.test"), handler=handler)
    with pytest.raises(PermanentDeliveryError, match=r"^550 5\.7\.68") as e:
        send_direct(direct_cfg(dns, server.port, ca_file=ca_file), msg, RCPT)
    assert len(handler.attempted) == 1  # a 5xx from one MX is the domain's answer: mx2 not tried
    advice = advise_text(str(e.value))
    assert advice.permanent and "Direct Send" in advice.text and "connector" in advice.text


def test_temporary_reply_moves_on_to_the_next_mx(dns_server, smtp_server, msg, ca_file):
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test.", "20 mx2.one.test."]},
                          mx1_one_test={"A": [LOCAL]}, mx2_one_test={"A": [LOCAL]}))
    handler = Capture(data_replies=["451 4.3.0 try later"])
    server = smtp_server(starttls=True, names=("mx1.one.test", "mx2.one.test"), handler=handler)
    send_direct(direct_cfg(dns, server.port, ca_file=ca_file), msg, RCPT)
    assert len(handler.attempted) == 2 and len(handler.messages) == 1


def test_queue_backend_direct_and_no_credentials_offered(dns_server, smtp_server, msg, ca_file):
    """The worker's send function routes to direct; a configured password never goes to an MX."""
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test."]}, mx1_one_test={"A": [LOCAL]}))
    server = smtp_server(starttls=True, auth=True, names=("mx1.one.test",))
    cfg = direct_cfg(dns, server.port, ca_file=ca_file, username="faxbox", password="s3cret")
    assert send_via_backend(cfg, msg, RCPT, Path).startswith("250 ")
    assert server.handler.messages[0]["auth"] is False


def test_faxbridge_test_delivery_direct(tmp_path, dns_server, smtp_server, ca_file):
    dns = dns_server(zone(one_test={"MX": ["10 mx1.one.test."]}, mx1_one_test={"A": [LOCAL]}))
    server = smtp_server(starttls=True, names=("mx1.one.test",))
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(f'[spool]\ndir = "spool"\n[delivery]\nbackend = "direct"\nfrom = "fax@example.com"\n'
                   f'ca_file = "{ca_file}"\ndirect_port = {server.port}\ndns_servers = ["{LOCAL}"]\n'
                   f'dns_port = {dns.port}\n')
    assert Config.load(cfg).delivery.backend == "direct"
    out = faxbridge("test-delivery", "--config", str(cfg), "--to", RCPT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "through direct (MX of one.test" in out.stdout and "accepted: 250" in out.stdout
    assert server.handler.messages[0]["tls"] is True

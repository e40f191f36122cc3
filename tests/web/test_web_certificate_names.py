"""The certificate page names the certificate's subject alternative names plainly
("DNS: vm, IP: 127.0.0.1"), never as the library's objects (``<DNSName(value='vm')>``)."""

from __future__ import annotations

import datetime
import ipaddress
import io
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from webauth import csrf

from appliance.config import Config
from appliance.web import tls


def _names(page: str) -> str:
    m = re.search(r"<dt>Names</dt><dd>(.*?)</dd>", page, re.S)
    assert m is not None, page
    return m.group(1)


def test_the_generated_certificate_is_named_plainly(client: FlaskClient, config: Config) -> None:
    tls.ensure_certificate(config.path(config.web.state_dir), "0.0.0.0", "vm")
    page = client.get("/account/certificate").get_data(as_text=True)
    assert _names(page) == "DNS: vm, DNS: vm.local, DNS: localhost, IP: 127.0.0.1, IP: ::1"
    assert "DNSName(" not in page and "IPAddress(" not in page and "&lt;" not in _names(page)


def test_an_uploaded_certificate_with_every_kind_of_name(client: FlaskClient, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fax.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = [x509.DNSName("fax.example.test"), x509.IPAddress(ipaddress.ip_address("192.0.2.5")),
           x509.RFC822Name("it@example.test"), x509.UniformResourceIdentifier("https://fax.example.test/"),
           x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "<Contoso>")])),
           x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
           x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x03a@b")]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(san), critical=False).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    r = client.post("/account/certificate", content_type="multipart/form-data",
                    data={"csrf_token": csrf(client), "cert": (io.BytesIO(pem), "c.pem"),
                          "key": (io.BytesIO(key_pem), "k.pem")})
    assert r.status_code == 302, r.get_data(as_text=True)
    page = client.get("/account/certificate").get_data(as_text=True)
    assert _names(page) == ("DNS: fax.example.test, IP: 192.0.2.5, email: it@example.test, "
                            "URI: https://fax.example.test/, directory name: O=\\&lt;Contoso\\&gt;, "
                            "registered ID: 1.2.3.4, other name of type 1.3.6.1.4.1.311.20.2.3")
    assert not re.search(r"\w+Name\(|IPAddress\(|RegisteredID\(|<\w+\(", page)

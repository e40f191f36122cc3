"""The web UI's HTTPS certificate: the owner's, or one generated on first start.

A box on a local network has no public name a CA would certify, so the first start makes a
self-signed certificate for the host name, its mDNS name (``<host>.local``), ``localhost`` and the
listen address (the browser asks once to trust it). The owner may install their own
(``web.cert_file``/``key_file``, or an upload into the state directory), which then wins.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.fsutil import write_private

#: browsers cap certificate lifetimes; a box regenerates before this runs out
LIFETIME_DAYS = 397


def generated_paths(state_dir: Path) -> tuple[Path, Path]:
    return Path(state_dir) / "tls" / "cert.pem", Path(state_dir) / "tls" / "key.pem"


def uploaded_paths(state_dir: Path) -> tuple[Path, Path]:
    """Where the owner's own certificate goes when uploaded through the page (it wins)."""
    return Path(state_dir) / "tls" / "owner-cert.pem", Path(state_dir) / "tls" / "owner-key.pem"


def active_paths(state_dir: Path, listen_host: str, hostname: str = "") -> tuple[Path, Path]:
    """The uploaded certificate when there is one, else the generated one (made if needed)."""
    cert, key = uploaded_paths(state_dir)
    if cert.exists() and key.exists():
        return cert, key
    return ensure_certificate(state_dir, listen_host, hostname)


def name_text(name: x509.GeneralName) -> str:
    """One subject alternative name as the page shows it: "DNS: vm", "IP: 127.0.0.1"."""
    if isinstance(name, x509.DNSName):
        return f"DNS: {name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP: {name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email: {name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI: {name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"directory name: {name.value.rfc4514_string()}"
    if isinstance(name, x509.RegisteredID):
        return f"registered ID: {name.value.dotted_string}"
    if isinstance(name, x509.OtherName):
        return f"other name of type {name.type_id.dotted_string}"
    return "a name of an unknown kind"


def describe(cert_path: Path) -> dict[str, str]:
    """Subject, names and expiry of a certificate file, for the page."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    try:
        names = [name_text(n) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "names": ", ".join(names),
        "expires": cert.not_valid_after_utc.strftime("%Y-%m-%d"),
        "self_signed": "yes" if cert.issuer == cert.subject else "no",
    }


def ensure_certificate(state_dir: Path, listen_host: str, hostname: str = "") -> tuple[Path, Path]:
    """The generated certificate's paths, making (or renewing) it when missing or near expiry."""
    cert_path, key_path = generated_paths(state_dir)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc - datetime.timedelta(days=30) > datetime.datetime.now(datetime.UTC):
            return cert_path, key_path
    host = hostname or socket.gethostname()
    # the box announces itself over mDNS as <host>.local: the name owners type (hwtests/BENCH.md B-2)
    names = [host] + ([f"{host}.local"] if host and "." not in host else []) + ["localhost"]
    ips = {"127.0.0.1", "::1"}
    try:
        if not ipaddress.ip_address(listen_host).is_unspecified:
            ips.add(listen_host)
    except ValueError:
        names.append(listen_host)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64] or "faxbridge"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Faxbridge appliance"),
        ]
    )
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(n for n in names if n)]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LIFETIME_DAYS))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path

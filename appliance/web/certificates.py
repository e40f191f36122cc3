"""The SIP settings' certificate upload: a chain and its key, checked together
(``tlskeys.pair_problem``), kept in the web state directory, and named in sip.tls_cert/tls_key.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for

from appliance.fsutil import write_atomic
from appliance.tlskeys import pair_problem
from appliance.web import formerrors
from appliance.web.configpage import load_doc, running, save_and_reload


def sip_certificate() -> Any:
    """Store an uploaded certificate chain and key in the web state dir and point sip.tls_* at them,
    after checking that they are PEM and belong together."""
    cert = request.files.get("cert")
    key = request.files.get("key")
    if cert is None or key is None or not cert.filename or not key.filename:
        flash("Choose both the certificate file and its private key file.")
        return redirect(url_for("settings.sip"))
    cert_data, key_data = cert.read(256 * 1024), key.read(256 * 1024)
    problem = pair_problem(cert_data, key_data, refuse_expired=False)
    if problem:
        flash(f"Not stored: {problem}")
        return redirect(url_for("settings.sip"))
    tls_dir = running().path(running().web.state_dir) / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(tls_dir / "sip-cert.pem", cert_data.decode("ascii"), 0o644)
    write_atomic(tls_dir / "sip-key.pem", key_data.decode("ascii"), 0o600)
    doc = load_doc()
    doc.set("sip", "tls_cert", str((tls_dir / "sip-cert.pem").resolve()))
    doc.set("sip", "tls_key", str((tls_dir / "sip-key.pem").resolve()))
    errors, message = save_and_reload(doc)
    flash(f"Not stored: {formerrors.as_text(errors)}" if errors else "Certificate stored. " + message)
    return redirect(url_for("settings.sip"))

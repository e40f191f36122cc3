"""End to end: our Registration (with digest) against Debian's kamailio as registrar, on loopback.

kamailio runs in the foreground from a config written into tmp (UDP on 127.0.0.1, registrar with
usrloc in memory, digest with a plain password via pv_auth_check). After REGISTER, an OPTIONS sent
to the AoR through kamailio must reach our endpoint (its lookup found our binding) and come back
with our Server header; after unregistering kamailio answers 404.
"""
from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest

from appliance.config import RegistrationConfig
from appliance.sip.message import SipResponse, parse_message
from appliance.sip.transport import SipEndpoint
from tests.provided import provided
from tests.budgets import LOADED

from sip_helpers import raw

KAMAILIO = "/usr/sbin/kamailio"
pytestmark = provided(os.path.exists(KAMAILIO), "kamailio not installed (Debian package 'kamailio'; make test installs it)")

CFG = """#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("usrloc", "db_mode", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (method == "REGISTER") {{
        if (!pv_auth_check("faxbridge.test", "s3cret", "0", "0")) {{
            auth_challenge("faxbridge.test", "1");
            exit;
        }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def kamailio(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _free_udp_port()
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(CFG.format(port=port))
    run = tmp_path / "run"
    run.mkdir()
    check = subprocess.run([KAMAILIO, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr[-2000:]
    log = open(tmp_path / "kamailio.log", "w")
    proc = subprocess.Popen([KAMAILIO, "-DD", "-E", "-f", str(cfg), "-Y", str(run), "-P", str(run / "kamailio.pid"),
                             "-m", "32", "-M", "4", "-w", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield port, proc, tmp_path / "kamailio.log"
    finally:
        proc.terminate()
        try:
            proc.wait(LOADED)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def _options_via(port: int, aor_user: str) -> SipResponse:
    """An OPTIONS to sip:user@kamailio from a plain socket; kamailio looks the user up and relays it."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        me = sock.getsockname()[1]
        uri = f"sip:{aor_user}@127.0.0.1:{port}"
        await loop.sock_sendto(sock, raw("OPTIONS", uri=uri, to=f"<{uri}>", call_id=f"opt-{time.time()}",
                                         via=f"SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{random.getrandbits(40):x};rport"),
                               ("127.0.0.1", port))
        while True:
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), LOADED)
            resp = parse_message(data)
            if isinstance(resp, SipResponse) and resp.status >= 200:
                return resp
    finally:
        sock.close()


async def _scenario(port: int, log_path: Path) -> None:
    ep = SipEndpoint()
    await ep.start([("udp", "127.0.0.1", 0)])
    try:
        # wait until kamailio answers at all (it needs a moment to fork its workers): each OPTIONS
        # gets 2 s, the whole start the loaded-machine budget
        deadline = time.monotonic() + LOADED
        while True:
            try:
                first = await asyncio.wait_for(_options_via(port, "5551000"), 2)
                break
            except (asyncio.TimeoutError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail("kamailio did not start: " + log_path.read_text()[-2000:])
                await asyncio.sleep(0.1)
        assert first.status == 404  # nobody registered yet

        cfg = RegistrationConfig(name="kam", registrar=f"sip:127.0.0.1:{port}", user="5551000",
                                 password="s3cret", expires=300)
        reg = await ep.add_registration(cfg)
        deadline = time.monotonic() + LOADED
        while not (reg.registered or reg.status().state == "failed") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        st = reg.status()
        assert st.registered and st.state == "registered", (st, log_path.read_text()[-2000:])
        assert 0 < st.expires_at - asyncio.get_running_loop().time() <= 300

        relayed = await _options_via(port, "5551000")
        assert relayed.status == 200 and relayed.headers.get("Server") == ep.ua.user_agent

        await ep.unregister_all(timeout=LOADED)
        assert reg.done and not reg.registered
        assert (await _options_via(port, "5551000")).status == 404
    finally:
        await ep.close()


def test_register_with_digest_at_kamailio(kamailio) -> None:  # type: ignore[no-untyped-def]
    port, proc, log_path = kamailio
    asyncio.run(_scenario(port, log_path))
    assert proc.poll() is None, log_path.read_text()[-2000:]

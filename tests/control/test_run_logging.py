"""`faxbridge run` logs to stderr and to log/faxbridge.log in the state directory through a queue
thread: every record reaches both, also the last ones before a clean stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_logs_to_stderr_and_the_file_until_it_stops(tmp_path: Path) -> None:
    port = _free_port()
    cfg = tmp_path / "faxbridge.toml"
    cfg.write_text(f'[sip]\nlisten = ["udp:127.0.0.1:{port}"]\nrtp_ports = [47000, 47099]\n'
                   '[spool]\ndir = "spool"\n[web]\nenabled = false\n'
                   '[system]\ncontrol_socket = "/tmp/fb-logtest-%d.sock"\n' % port)
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(cfg),
                             "--state-dir", str(tmp_path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + LOADED
        logfile = tmp_path / "log" / "faxbridge.log"
        while time.monotonic() < deadline and proc.poll() is None:
            if logfile.exists() and "listening" in logfile.read_text():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=LOADED)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    text = logfile.read_text()
    assert "Faxbridge is running" in err
    # the records of the start and of the stop are in both places
    for needle in ("listening", "stopped"):
        assert needle in text.lower() and needle in err.lower(), (needle, text[-2000:])
    assert oct(logfile.stat().st_mode & 0o777) == "0o600"

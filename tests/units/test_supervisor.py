"""`make run`'s process manager for real: Debian's supervisord with the configuration made from
systemd/supervisord.conf.in, the daemon and the web UI on loopback ports.  A killed web UI comes
back and the daemon keeps its pid; a killed daemon comes back and the web UI keeps its pid; the web
page's "Restart now" works; Ctrl-C (SIGINT to supervisord's process group) stops everything."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from appliance.control import ControlClient, DaemonUnavailable
from appliance.supervisorconf import TEMPLATE, render
from appliance.web.auth import AdminStore
from appliance.web.tomledit import ConfigDoc
from tests.budgets import LOADED, wait_until
from tests.conftest import free_port
from tests.provided import require
from tests.web.served import PASSWORD, ServedUI

SUPERVISORD, SUPERVISORCTL = shutil.which("supervisord"), shutil.which("supervisorctl")
PROGRAMS = ("faxbridge", "faxbridge-web")


def test_render_fills_in_this_machines_paths_and_nothing_else() -> None:
    text = render(TEMPLATE.read_text(), state_dir=Path("/srv/fax%box"), bin_dir=Path("/opt/fb/venv/bin"),
                  config=Path("/etc/faxbridge.toml"))
    assert "@" not in re.sub(r"^;.*$", "", text, flags=re.M)  # every placeholder filled
    assert "command=/opt/fb/venv/bin/faxbridge run --no-web --state-dir /srv/fax%%box --config " \
           "/etc/faxbridge.toml\n" in text
    assert "command=/opt/fb/venv/bin/faxbridge web --state-dir /srv/fax%%box --config /etc/faxbridge.toml\n" in text
    assert "logfile=/srv/fax%%box/log/supervisor/supervisord.log\n" in text
    assert text.count("autorestart=unexpected") == 2 and text.count("exitcodes=0") == 2
    with pytest.raises(ValueError, match="spaces"):
        render(TEMPLATE.read_text(), state_dir=Path("/home/me/my faxes"), bin_dir=Path("/v/bin"))
    # each program's output in its own file; supervisor's socket guarded by a password of this file
    assert "stdout_logfile=/srv/fax%%box/log/supervisor/faxbridge-web.out\n" in text and "silent=false" in text
    passwords = re.findall(r"^password=(\S+)$", text, flags=re.M)
    assert len(passwords) == 2 and passwords[0] == passwords[1] and len(passwords[0]) >= 32
    again = render(TEMPLATE.read_text(), state_dir=Path("/srv/fax%box"), bin_dir=Path("/opt/fb/venv/bin"))
    assert re.findall(r"^password=(\S+)$", again, flags=re.M)[0] != passwords[0]


def test_make_runs_terminal_shows_the_programs_not_supervisors_warnings() -> None:
    """`make run` (--terminal): the daemon's banner and log lines on the terminal, supervisor's own
    lines only in its file, and nothing it would warn about (running as root unsaid, an open socket)."""
    text = render(TEMPLATE.read_text(), state_dir=Path("/srv/fax"), bin_dir=Path("/v/bin"), terminal=True,
                  as_root=True)
    assert text.count("stdout_logfile=/dev/stdout\n") == 2 and text.count("stdout_logfile_maxbytes=0\n") == 2
    assert "silent=true\n" in text and "\nuser=root\n" in text


def test_the_template_holds_no_machine_specific_path() -> None:
    for line in TEMPLATE.read_text().splitlines():
        if not line.startswith(";") and "/" in line.partition("=")[2]:
            value = line.partition("=")[2].strip()
            assert value.startswith(("@STATE_DIR@", "@BIN@", "unix://@STATE_DIR@")), line


class Supervised:
    """supervisord -n -c <generated config> for a state directory with a loopback configuration."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.sip_port, self.web_port = free_port(), free_port("tcp")
        rtp = 31000 + (os.getpid() % 300) * 100
        (state / "faxbridge.toml").write_text(f"""
[sip]
listen = ["udp:127.0.0.1:{self.sip_port}"]
rtp_ports = [{rtp}, {rtp + 99}]

[spool]
dir = "spool"

[delivery]
backend = "maildir"
url = "Maildir"

[routing]
default = "faxes@example.test"

[web]
listen = "127.0.0.1:{self.web_port}"
https = false

[system]
control_socket = "fb.sock"
""")
        AdminStore(state / "web").set_password(PASSWORD)
        # what `make run` does: generate the file, then supervisord in the foreground
        made = subprocess.run([sys.executable, "-m", "appliance.supervisorconf", "--state-dir", str(state)],
                              capture_output=True, text=True, timeout=LOADED, check=True)
        self.conf = Path(made.stdout.strip())
        self.out = (state / "supervisord.out").open("wb")
        self.proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(self.conf)], stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def status(self) -> dict[str, tuple[str, int]]:
        """program -> (state, pid) as supervisorctl reports them."""
        r = subprocess.run([str(SUPERVISORCTL), "-c", str(self.conf), "status"], capture_output=True,
                           text=True, timeout=LOADED)
        out = {}
        for line in r.stdout.splitlines():
            m = re.match(r"(\S+)\s+(\S+)(?:\s+pid (\d+))?", line)
            if m:
                out[m.group(1)] = (m.group(2), int(m.group(3) or 0))
        return out

    def running(self, program: str, not_pid: int = 0) -> int:
        """The program's pid once supervisor reports it RUNNING (with a pid other than ``not_pid``)."""
        def check() -> int:
            state, pid = self.status().get(program, ("", 0))
            return pid if state == "RUNNING" and pid != not_pid else 0
        return wait_until(check, f"{program} RUNNING\n{self.logs()}")

    def web_answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=LOADED)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except (OSError, http.client.HTTPException):
            return False

    def daemon_answers(self) -> bool:
        try:
            return bool(ControlClient(self.state / "fb.sock", LOADED).request({"cmd": "status"}).get("ok"))
        except DaemonUnavailable:
            return False

    def logs(self) -> str:
        parts = []
        for f in [self.state / "supervisord.out", *sorted((self.state / "log" / "supervisor").glob("*"))]:
            if f.is_file():
                parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def ctrl_c(self) -> int:
        """What the terminal does on Ctrl-C: SIGINT to the foreground process group (supervisord's)."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(LOADED * 2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in processes_of(self.state):
            os.kill(pid, signal.SIGKILL)
        self.out.close()


def processes_of(state: Path) -> list[int]:
    """Processes whose command line names the state directory (ours, wherever they were started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(state).encode() in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture
def supervised() -> Iterator[Supervised]:
    require(SUPERVISORD and SUPERVISORCTL,
            "supervisor missing: `make run` and `make test` install Debian's supervisor package")
    state = Path(tempfile.mkdtemp(prefix="fbsv-", dir="/tmp"))  # supervisor's socket: sun_path is short
    s = Supervised(state)
    try:
        yield s
    finally:
        s.close()
        shutil.rmtree(state, ignore_errors=True)


def test_both_programs_run_restart_alone_and_stop_on_ctrl_c(supervised: Supervised) -> None:
    s = supervised
    daemon, web = s.running("faxbridge"), s.running("faxbridge-web")
    wait_until(s.web_answers, f"the web UI's /healthz\n{s.logs()}")
    wait_until(s.daemon_answers, f"the daemon's control socket\n{s.logs()}")

    # the web UI crashes: supervisor starts it again, the daemon (and its calls) never notice
    os.kill(web, signal.SIGKILL)
    web = s.running("faxbridge-web", not_pid=web)
    wait_until(s.web_answers, f"the restarted web UI\n{s.logs()}")
    assert s.status()["faxbridge"] == ("RUNNING", daemon)

    # the daemon crashes: started again, the web UI keeps running
    os.kill(daemon, signal.SIGKILL)
    daemon = s.running("faxbridge", not_pid=daemon)
    wait_until(s.daemon_answers, f"the restarted daemon\n{s.logs()}")
    assert s.status()["faxbridge-web"] == ("RUNNING", web)

    # the web page's "Restart now" for a web setting: the web process ends (75) and comes back
    ui = ServedUI(s.state, port=s.web_port)
    ui.login()
    doc = ConfigDoc.load(s.state / "faxbridge.toml")
    doc.set("web", "session_hours", 8)
    doc.save()
    page = ui.request("GET", "/faxes").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert ui.post_form("/system/restart", {"csrf_token": token}).status == 302
    web = s.running("faxbridge-web", not_pid=web)
    wait_until(s.web_answers, f"the web UI after its restart\n{s.logs()}")
    assert s.status()["faxbridge"] == ("RUNNING", daemon)
    assert "exit status 75; expected" not in s.logs()  # restarted as unexpected, not left EXITED

    # Ctrl-C: supervisord stops both and ends; nothing of ours is left running
    assert s.ctrl_c() == 0, s.logs()
    assert processes_of(s.state) == [], s.logs()
    assert not (s.state / "supervisor" / "supervisord.pid").exists()
    assert "Traceback" not in (s.state / "log" / "supervisor" / "faxbridge.out").read_text()
    assert "CRIT" not in s.logs(), s.logs()  # nothing alarming from supervisor itself

"""`faxbridge check-config`: every problem of a file in one run, each with a hint where one helps;
and the help of the commands says which configuration they really read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]


def faxbridge(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=LOADED)


def test_check_config_lists_every_problem_in_one_run_with_hints(tmp_path: Path) -> None:
    f = tmp_path / "faxbridge.toml"
    f.write_text("""
[sip]
rtp_ports = "40000-40999"    # a type error: the web page's way of writing it
max_calls = 5000             # out of range

[fax]
idnet = "+1 555 1000"        # a misspelt key

[delivery]
backend = "smpt"             # a misspelt choice

[routing]
default = "sales@"           # half an address

[sytem]                      # a misspelt section
hostname = "fax"
""")
    out = faxbridge("check-config", str(f))
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: sip.rtp_ports: expected a list of an integer, got str",
        "error: fax.idnet: unknown key (did you mean 'ident'?)",
        "error: sytem: unknown section (did you mean 'system'?)",
        "error: sip.max_calls: must be between 1 and 1000",
        "error: delivery.backend: must be one of smtp, direct, graph, maildir, not 'smpt' (did you mean 'smtp'?)",
        "error: routing.default: 'sales@' is not a mail address: there must be something after the @-sign",
    ], out.stderr
    assert "6 problem(s)" in out.stderr and "OK" not in out.stdout


def test_hints_for_a_key_in_the_wrong_section_and_for_values(tmp_path: Path) -> None:
    f = tmp_path / "faxbridge.toml"
    f.write_text('[sip]\nrings = 3\n[[sip.peers]]\nname = "gw"\nmatch = "10.0.0.5"\nt38 = "acept"\n'
                 '[system]\ntimezone = "Europe/Berln"\n[modem]\nflow_control = "RTSCTS"\n')
    out = faxbridge("check-config", str(f))
    assert out.returncode == 1
    for expected in ("sip.rings: unknown key (it belongs in [modem])",
                     "sip.peers[0].t38: must be off, accept or request, not 'acept' (did you mean 'accept'?)",
                     "system.timezone: 'Europe/Berln' is not a known time zone (did you mean 'Europe/Berlin'?)",
                     "modem.flow_control: must be rtscts, xonxoff or none, not 'RTSCTS' (did you mean 'rtscts'?)"):
        assert f"error: {expected}" in out.stderr.splitlines(), out.stderr


def test_a_type_error_does_not_bring_checks_that_only_repeat_it(tmp_path: Path) -> None:
    # a wrong type leaves the default in its place: no second message about the same key
    f = tmp_path / "faxbridge.toml"
    f.write_text('[sip]\nlisten = "udp:127.0.0.1:5060"\n[[sip.peers]]\nname = 5\nmatch = "10.0.0.5"\n')
    out = faxbridge("check-config", str(f))
    assert [line for line in out.stderr.splitlines() if line.startswith("error: ")] == [
        "error: sip.listen: expected a list of a string, got str",
        "error: sip.peers[0].name: expected a string, got int"], out.stderr


def test_check_config_without_a_file_checks_the_state_directorys(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = faxbridge("check-config", "--state-dir", str(state))
    assert out.returncode == 0 and f"no {state / 'faxbridge.toml'}: the embedded defaults: OK" in out.stdout
    state.mkdir()
    (state / "faxbridge.toml").write_text('[routing]\ndefault = "admin@"\n')
    out = faxbridge("check-config", "--state-dir", str(state))
    assert out.returncode == 1
    assert "error: routing.default: 'admin@' is not a mail address: there must be something after the @-sign" in out.stderr


def test_a_path_written_for_the_old_rule_is_warned_about(tmp_path: Path) -> None:
    state = tmp_path / "var"
    f = tmp_path / "faxbridge.toml"
    f.write_text('[spool]\ndir = "var/spool"\n')
    out = faxbridge("check-config", str(f), "--state-dir", str(state))
    assert out.returncode == 0, out.stderr
    assert (f"warning: spool.dir: 'var/spool' means {state / 'var' / 'spool'} (relative paths are relative to "
            f"the state directory {state}); drop the leading 'var/' if that is not meant") in out.stderr
    # beside the file, where older versions looked, there is a spool: say where it went
    f.write_text('[spool]\ndir = "faxes"\n')
    (tmp_path / "faxes").mkdir()
    out = faxbridge("check-config", str(f), "--state-dir", str(state))
    assert out.returncode == 0 and f"{tmp_path / 'faxes'} exists: give its absolute path or move it" in out.stderr


def test_every_command_that_reads_the_configuration_says_which_it_reads() -> None:
    for command in ("run", "web", "route", "queue", "resend", "test-delivery", "reset-password", "selftest"):
        out = faxbridge(command, "--help")
        text = " ".join(out.stdout.split())
        assert out.returncode == 0 and "default: embedded defaults" not in text, (command, text)
        assert ("faxbridge.toml in the state directory" in text and "--state-dir" in text
                and "$FAXBRIDGE_STATE_DIR, else ./var" in text), (command, text)
    text = " ".join(faxbridge("check-config", "--help").stdout.split())
    assert "faxbridge.toml in the state directory" in text and "--state-dir" in text

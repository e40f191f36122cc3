"""Browser fixtures: a real appliance (`faxbridge run`) on loopback, driven by Debian's chromium.

The appliance runs as the owner runs it: daemon and web process from one TOML file, SIP on
127.0.0.1, delivery into a Maildir, spool and web state in the test's directory.  Playwright
launches /usr/bin/chromium (browsers cannot be downloaded here; `make test` installs Debian's);
one browser per test session (it takes a second to start), a fresh context (cookies, storage)
per test.  Screenshots go to test-artifacts/screenshots/ at the repository root, so a CI run
keeps a picture of every key step.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.budgets import LOADED
from tests.conftest import free_port
from tests.provided import in_ci, missing, provided

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = Path(os.environ.get("FAXBRIDGE_CHROMIUM", "/usr/bin/chromium"))
#: the administrator password the tests set through the first-start page
PASSWORD = "correct horse battery staple 42"

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]
    # the test modules import playwright themselves: without it they are not collected at all,
    # and the report header says why; under CI (make test installs it) their import errors fail the run
    if not in_ci():
        collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config: pytest.Config) -> str | None:
    reason = _skip_reason()
    return f"browser tests: not run: {reason}" if reason else None


def _skip_reason() -> str | None:
    """Skip only when the browser or Playwright is really absent, and say how to get them."""
    if sync_playwright is None:
        return "the playwright package is not installed (pip install -e '.[test]', or make test)"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is absent (make apt APT_EXTRA=chromium, or make test, installs Debian's chromium)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(provided(False, reason))


class Appliance:
    """`faxbridge run --config <tmp>/faxbridge.toml` in its own process group, with its log kept."""

    def __init__(self, workdir: Path, *, extra: str = "", configured: bool = False) -> None:
        self.workdir = workdir
        self.sip_port = free_port()
        self.web_port = free_port("tcp")
        self.rtp_first = 30000 + (os.getpid() % 200) * 100
        self.maildir = workdir / "Maildir"
        self.config = workdir / "faxbridge.toml"
        self.config.write_text(f"""\
# written by tests/browser/conftest.py
[sip]
listen = ["udp:127.0.0.1:{self.sip_port}", "tcp:127.0.0.1:{self.sip_port}"]
rtp_ports = [{self.rtp_first}, {self.rtp_first + 99}]
playout_delay_ms = 250

[fax]
ident = "+1 555 1000"
no_signal_timeout = 8
post_phase_e_timeout = 5

[spool]
dir = "spool"

[delivery]
backend = "maildir"
url = "Maildir"
retry_initial = 1.0
retry_max = 5.0

[routing]
default = "faxes@example.test"

[web]
listen = "127.0.0.1:{self.web_port}"
state_dir = "web"
{"setup_done = true" if configured else ""}

[system]
control_socket = "fb.sock"
{extra}
""")
        self.log = workdir / "appliance.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def setup_code(self) -> str:
        """The first-start page's one-time code, where the box keeps it (the web state directory);
        the owner reads it in the terminal, on the card or on the console."""
        from appliance.web import setupcode

        code = setupcode.read(self.workdir / "web")
        assert code, "a box without a password always has a setup code"
        return code

    def start(self, timeout: float = LOADED) -> None:
        """Start and wait until the web process answers /healthz over HTTPS or HTTP."""
        faxbridge = Path(sys.executable).with_name("faxbridge")
        cmd = [str(faxbridge)] if faxbridge.exists() else [sys.executable, "-m", "appliance"]
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd + ["run", "--config", str(self.config), "--state-dir", str(self.workdir)],
                                         cwd=self.workdir,
                                         stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"appliance exited with {self.proc.returncode}:\n{self.log_text()}")
            if not self.base_url:
                for scheme in ("https", "http"):  # whichever the web process serves
                    if _answers(f"{scheme}://127.0.0.1:{self.web_port}/healthz"):
                        self.base_url = f"{scheme}://127.0.0.1:{self.web_port}"
                        break
            if self.base_url and "Faxbridge is running" in self.log_text():  # the daemon is up too
                return
            time.sleep(0.1)
        raise AssertionError(f"appliance's web UI did not answer /healthz in {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM (the daemon stops its web child), then the whole group if anything lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(LOADED)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:  # the web child, should the parent have died without stopping it
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def sip_uri(self, user: str = "fax") -> str:
        return f"sip:{user}@127.0.0.1:{self.sip_port}"

    def send_test_fax(self, *args: str, user: str = "fax", timeout: float = 120, tiff: Path | None = None) -> str:
        """A real fax call into our own SIP listener: `faxbridge send-test-fax` with the top half of
        one demo page at standard resolution (under 20 s of real time; the three-page --demo takes 48)."""
        from appliance.fax.pages import STANDARD, write_fax_tiff
        from appliance.fax.testpages import demo_pages

        tiff = tiff or self.workdir / "one-page.tif"
        if not tiff.exists():
            page = demo_pages(1, STANDARD)[0]
            write_fax_tiff([page.crop((0, 0, page.width, page.height // 2))], tiff, STANDARD)
        out = subprocess.run([sys.executable, "-m", "appliance", "send-test-fax", "--to", self.sip_uri(user),
                              str(tiff), *args], capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"send-test-fax failed:\n{out.stdout}{out.stderr}\n{self.log_text()[-3000:]}"
        return out.stdout

    def mails(self) -> list[email.message.EmailMessage]:
        """Messages delivered into the appliance's Maildir so far."""
        if not (self.maildir / "new").is_dir():
            return []
        box = mailbox.Maildir(self.maildir, factory=None, create=False)
        return [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default)  # type: ignore[misc]
                for k in box.keys()]

    def wait_mails(self, count: int, timeout: float = LOADED) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.mails()
            if len(got) >= count:
                return got
            time.sleep(0.2)
        raise AssertionError(f"expected {count} mail(s) in {self.maildir}, got {len(self.mails())}")


def _answers(url: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the box's own certificate is self-signed by design
    try:
        with urllib.request.urlopen(url, timeout=LOADED, context=ctx) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


@pytest.fixture
def appliance_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Appliance]]:
    """Start fresh appliances (an empty box each: no password, no faxes); all stopped afterwards."""
    started: list[Appliance] = []

    def make(extra: str = "", configured: bool = False) -> Appliance:
        # a short path: the control socket's path must stay under the 108-byte sun_path limit
        app = Appliance(tmp_path_factory.mktemp("box"), extra=extra, configured=configured)
        started.append(app)
        app.start()
        return app

    yield make
    for app in started:
        app.stop()
        if os.environ.get("FAXBRIDGE_TEST_SHOW_LOG"):
            print(app.log_text())


@pytest.fixture
def appliance(appliance_factory: Callable[..., Appliance]) -> Appliance:
    """One empty box, running: no password, no faxes, the wizard not yet done."""
    return appliance_factory()


@pytest.fixture
def configured_box(appliance_factory: Callable[..., Appliance]) -> Appliance:
    """A box past the wizard (web.setup_done), still without a password: tests set one."""
    return appliance_factory(configured=True)


@pytest.fixture
def browser() -> Iterator["Browser"]:
    """Debian's chromium, headless; one per test. Playwright's sync API keeps an asyncio loop
    marked as running while it lives, so a browser kept past its test would break every later
    test in the same worker that calls asyncio.run(); a launch costs well under a second."""
    reason = _skip_reason()
    if reason:
        missing(reason)
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium refuses its sandbox as root
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        yield b
        b.close()


@pytest.fixture
def context(browser: "Browser") -> Iterator["BrowserContext"]:
    """A fresh profile per test: no cookie or session leaks from one test into the next."""
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    # budgets for every action and every expect() (Playwright's own default for those is 5 s):
    # chromium, the web process and the calls share two cores in CI
    ctx.set_default_timeout(LOADED * 1000)
    expect.set_options(timeout=LOADED * 1000)
    yield ctx
    ctx.close()


class PageProblems:
    """What the page reported that a test may want to assert against: dialogs, errors, CSP."""

    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []

    def csp_violations(self) -> list[str]:
        return [m for m in self.console_errors if "Content Security Policy" in m]


@pytest.fixture
def page(context: "BrowserContext") -> Iterator["Page"]:
    """A page that records (and dismisses) every dialog and console error as `page.problems`."""
    pg = context.new_page()
    problems = PageProblems()

    def on_dialog(d: object) -> None:
        problems.dialogs.append(f"{d.type}: {d.message}")  # type: ignore[attr-defined]
        d.dismiss()  # type: ignore[attr-defined]

    pg.on("dialog", on_dialog)
    pg.on("console", lambda m: problems.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.page_errors.append(str(e)))
    pg.problems = problems  # type: ignore[attr-defined]
    yield pg
    # every page a test visited kept to the CSP (no inline script or style, nothing from elsewhere)
    assert not problems.csp_violations(), f"CSP violations: {problems.csp_violations()}"


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[["Page", str], Path]:
    """`shot(page, "step")` saves test-artifacts/screenshots/<test>[-step].png (a CI artefact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")

    def take(pg: "Page", step: str = "") -> Path:
        name = f"{test}-{step}" if step else test
        path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        pg.screenshot(path=str(path), full_page=True)
        return path

    return take


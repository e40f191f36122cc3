"""The HTML pages: fax list (paging, search, filter), fax detail, empty spool, escaping."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from flask.testing import FlaskClient

from appliance.config import Config
from appliance.spool.store import FaxRecord, Spool
from webauth import authed

from appliance.web.app import create_app
from webfax import FINE, STANDARD, T0, XSS, add_fax

ROW_LINK = re.compile(r'data-label="Received"><a href="/faxes/(\d+)">')


def listed_ids(body: str) -> list[int]:
    """Fax ids of the list's rows, in page order."""
    return [int(i) for i in ROW_LINK.findall(body)]


def text(client: FlaskClient, url: str, status: int = 200) -> str:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code)
    return r.get_data(as_text=True)


def test_list_shows_call_facts_thumbnail_and_recipients(client: FlaskClient, full_fax: FaxRecord) -> None:
    body = text(client, "/faxes")
    assert listed_ids(body) == [full_fax.id]
    for value in ("+4930123456", "ACME Sales", "+4930999100", "+49 30 123456", "sales@example.com",
                  "ops@example.com", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0))):
        assert value in body
    assert f'src="/faxes/{full_fax.id}/pages/1.png?size=thumb"' in body
    assert "Retrying" in body  # one job failed and waits: the fax is failed_retrying
    assert "incomplete" not in body


def test_list_marks_incomplete_and_omits_thumbnail_without_image(client: FlaskClient, spool: Spool) -> None:
    partial = add_fax(spool, T0, dpis=[FINE], complete=False, caller_number="111")
    nofax = add_fax(spool, T0 + 60, caller_number="222")
    assert (partial.state, nofax.state) == ("received", "no_fax")
    body = text(client, "/faxes")
    assert listed_ids(body) == [nofax.id, partial.id]
    assert body.count(">incomplete</span>") == 1
    assert f"/faxes/{partial.id}/pages/1.png" in body
    assert f"/faxes/{nofax.id}/pages/" not in body
    assert "No fax" in body


def test_list_pages_fifty_newest_first(client: FlaskClient, spool: Spool) -> None:
    faxes = [add_fax(spool, T0 + 60 * i, caller_number=f"+1555{i:04d}") for i in range(55)]
    newest_first = [f.id for f in reversed(faxes)]
    page1 = text(client, "/faxes")
    assert listed_ids(page1) == newest_first[:50]
    assert "55 faxes" in page1 and "Newer" not in page1
    older = re.search(r'rel="next" href="([^"]+)"', page1)
    assert older is not None
    page2 = text(client, html.unescape(older.group(1)))
    assert listed_ids(page2) == newest_first[50:]
    assert 'rel="next"' not in page2 and 'rel="prev"' in page2
def test_list_search_and_state_filter(client: FlaskClient, spool: Spool) -> None:
    a = add_fax(spool, T0, dpis=[STANDARD], caller_number="+4930111", caller_name="Dr. Müller",
                recipients=["a@example.com"])
    b = add_fax(spool, T0 + 60, dpis=[STANDARD], caller_number="+4989222", remote_ident="HOTEL ALPHA",
                recipients=["front@example.com"])
    c = add_fax(spool, T0 + 120, caller_number="+4930333")
    (job,) = spool.jobs_for(b.id)
    spool.claim_due_jobs(T0 + 200)  # claims a's job too: a is now delivering
    spool.job_delivered(job.id, T0 + 201, "250 OK")
    assert listed_ids(text(client, "/faxes?q=4930")) == [c.id, a.id]
    assert listed_ids(text(client, "/faxes?q=hotel")) == [b.id]           # TSI, any case
    assert listed_ids(text(client, "/faxes?q=MÜLLER")) == [a.id]
    assert listed_ids(text(client, "/faxes?q=front@")) == [b.id]          # recipient
    assert listed_ids(text(client, "/faxes?state=delivered")) == [b.id]
    assert listed_ids(text(client, "/faxes?state=no_fax")) == [c.id]
    assert listed_ids(text(client, "/faxes?q=4930&state=delivering")) == [a.id]
    body = text(client, "/faxes?q=nothing-like-this")
    assert listed_ids(body) == [] and "No faxes match" in body
    assert 'value="nothing-like-this"' in body  # the search box keeps the query


def test_pager_links_keep_search_and_filter(client: FlaskClient, spool: Spool) -> None:
    for i in range(51):
        add_fax(spool, T0 + i, caller_number=f"+49{i:03d}")
    body = text(client, "/faxes?q=%2B49&state=no_fax")
    assert re.search(r'href="/faxes\?before=[0-9._]+&amp;q=%2B49&amp;state=no_fax"', body)


def test_list_rejects_bad_parameters(client: FlaskClient) -> None:
    for url, name in (("/faxes?before=0", "before"), ("/faxes?after=x_1", "after"), ("/faxes?state=bogus", "state"),
                      ("/faxes?q=" + "x" * 201, "q")):
        body = text(client, url, 400)
        assert f"Parameter &#39;{name}&#39;" in body


def test_detail_shows_call_facts_jobs_attempts_and_pages(client: FlaskClient, full_fax: FaxRecord) -> None:
    body = text(client, f"/faxes/{full_fax.id}")
    for value in ("+4930123456", "ACME Sales", "+4930999100", "+49 30 123456", "14,400 bit/s",
                  "standard (204x98 dpi)", "1 min 05 s", "SIP, gw1", "a84b4c76e66710@gw1.example",
                  "sales@example.com", "ops@example.com",
                  "451 4.3.0 Mailbox temporarily unavailable",
                  html.escape("250 2.6.0 <x@faxbridge> Queued mail for delivery")):
        assert value in body, value
    assert re.search(r"<dt>Error correction \(ECM\)</dt><dd>yes", body)
    assert re.search(r"<dt>Damaged rows</dt><dd>3", body)
    assert re.search(r"<dt>Result</dt><dd>The fax was received completely.", body)
    assert body.count('<span class="badge state-dead">failed</span>') == 1
    assert body.count('<span class="badge state-delivered">accepted</span>') == 1
    for n in (1, 2, 3):
        assert f'href="/faxes/{full_fax.id}/pages/{n}.png?size=full"' in body
        assert f'src="/faxes/{full_fax.id}/pages/{n}.png?size=thumb"' in body
    assert f"/pages/4.png" not in body
    assert f'href="/faxes/{full_fax.id}.tif"' in body


def test_detail_of_a_call_without_fax(client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0, caller_number="+1999", result_text="No fax signal")
    body = text(client, f"/faxes/{fax.id}")
    assert "No fax signal" in body and "No pages." in body and ".tif" not in body
    assert "<dt>Sending fax&#39;s ID (TSI)</dt><dd>not sent</dd>" in body  # unreported, not blank


def test_unknown_fax_is_404(client: FlaskClient, full_fax: FaxRecord) -> None:
    assert "There is no fax 999" in text(client, "/faxes/999", 404)
    text(client, "/faxes/abc", 404)


def test_untrusted_values_are_escaped_in_html(client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0, dpis=[STANDARD], remote_ident=XSS, caller_name=XSS, caller_number=XSS,
                  called_number=XSS, result_text=XSS, line=XSS, extra={XSS: XSS},
                  recipients=[f"x@example.com"])
    (job,) = spool.jobs_for(fax.id)
    spool.claim_due_jobs(T0 + 40)
    spool.job_retry(job.id, T0 + 41, XSS, T0 + 100)
    escaped = html.escape(XSS)
    for url in ("/faxes", f"/faxes/{fax.id}", f"/faxes?q={XSS}"):
        body = text(client, url)
        assert "<script" not in body, url
        assert escaped in body, url
    detail = text(client, f"/faxes/{fax.id}")
    assert detail.count(escaped) >= 9  # caller number+name, called, TSI, result, line, extra k+v, reply


def test_empty_spool_without_directory(client: FlaskClient, config: Config) -> None:
    assert not config.path(config.spool.dir).exists()
    assert "No faxes have been received yet." in text(client, "/faxes")
    text(client, "/faxes/1", 404)
    text(client, "/faxes/1/pages/1.png", 404)


def test_empty_spool_directory_without_database(config: Config) -> None:
    root = config.path(config.spool.dir)
    (root / "cache").mkdir(parents=True)
    client = authed(create_app(config))
    assert "No faxes have been received yet." in text(client, "/faxes")
    assert not (root / "spool.db").exists()  # the web UI never creates the daemon's database


def test_database_created_after_web_start_is_picked_up(config: Config) -> None:
    client = authed(create_app(config))
    assert listed_ids(text(client, "/faxes")) == []
    with Spool(config.path(config.spool.dir)) as writer:
        fax = add_fax(writer, T0, caller_number="+1")
    assert listed_ids(text(client, "/faxes")) == [fax.id]


def test_web_never_writes_the_database(client: FlaskClient, full_fax: FaxRecord, spool: Spool,
                                       config: Config) -> None:
    root = config.path(config.spool.dir)

    def state() -> tuple[object, ...]:
        # readers never touch spool.db or its WAL; -shm read marks may change, so it is left out
        files = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.glob("spool.db*")
                 if not p.name.endswith("-shm")}
        return files, spool.get_fax(full_fax.id), spool.jobs_for(full_fax.id)

    before = state()
    for url in ("/faxes", f"/faxes/{full_fax.id}", "/api/faxes", f"/faxes/{full_fax.id}/pages/1.png"):
        assert client.get(url).status_code == 200, url
    assert state() == before


def test_templates_never_disable_escaping() -> None:
    templates = Path(__file__).parents[2] / "appliance" / "web" / "templates"
    sources = {p.name: p.read_text() for p in templates.glob("*.html")}
    assert len(sources) >= 4
    for name, src in sources.items():
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup", src), name


def test_root_redirects_to_the_list_keeping_the_query(client: FlaskClient) -> None:
    r = client.get("/?q=abc&page=2")
    assert r.status_code == 302 and r.headers["Location"] == "/faxes?q=abc&page=2"
    assert client.get("/").status_code == 200  # without the list's query, "/" is the dashboard


def test_detail_page_title_is_just_the_fax(client: FlaskClient, full_fax: FaxRecord) -> None:
    html = client.get(f"/faxes/{full_fax.id}").get_data(as_text=True)
    title = html[html.index("<title>"):html.index("</title>")]
    assert title == f"<title>Fax {full_fax.id} · Faxbridge" and html.count('id="trace"') == 1

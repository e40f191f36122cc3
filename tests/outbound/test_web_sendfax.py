"""The send-a-fax pages through Flask's test client: validation, CSRF, staging bounds, escaping.

The daemon side is tests/browser/sendfax_double.py on a real control socket; the files are real
PNGs rendered by it into real preview PNGs and a real fax TIFF.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image, ImageDraw
from werkzeug.test import TestResponse

from appliance.config import Config, OutboundConfig, SpoolConfig, SystemConfig
from appliance.web.app import create_app
from tests.browser.sendfax_double import HOSTILE_CSI, OutboundDouble
from tests.control.harness import short_dir
from tests.web.webauth import csrf, login

MAX_BYTES = 200_000


def png(text: str = "hello", size: tuple[int, int] = (850, 1100)) -> bytes:
    """A page-shaped PNG with some text on it, as a user would upload."""
    im = Image.new("L", size, 255)
    ImageDraw.Draw(im).text((50, 50), text, fill=0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def sock() -> Iterator[Path]:
    d = short_dir()
    yield d / "fb.sock"
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def config(tmp_path: Path, sock: Path) -> Config:
    return Config(
        spool=SpoolConfig(dir="spool"),
        system=SystemConfig(control_socket=str(sock)),
        outbound=OutboundConfig(enabled=True, max_bytes=MAX_BYTES),
        base_dir=tmp_path,
    )


@pytest.fixture
def spool_dir(config: Config) -> Path:
    d = config.path(config.spool.dir)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def double(spool_dir: Path, sock: Path) -> Iterator[OutboundDouble]:
    d = OutboundDouble(spool_dir, page_seconds=0.2)
    with d.serve(sock):
        yield d


@pytest.fixture
def client(config: Config) -> FlaskClient:
    c = create_app(config).test_client()
    login(c)
    return c


def staged(spool_dir: Path) -> list[Path]:
    root = spool_dir / "outbound-staging"
    return sorted(p for p in root.iterdir() if p.name != ".upload") if root.is_dir() else []


def post_send(
    client: FlaskClient,
    *,
    action: str = "preview",
    files: list[tuple[bytes, str]] | None = None,
    token: bool = True,
    **fields: str,
) -> TestResponse:
    data: dict[str, object] = {"action": action, "number": "555 123 4567", "resolution": "fine", **fields}
    if token:
        data["csrf_token"] = csrf(client)
    if files is not None:
        data["files"] = [(io.BytesIO(b), name) for b, name in files]
    return client.post("/send", data=data, content_type="multipart/form-data")


def test_form_has_fields_csrf_and_accept(client: FlaskClient) -> None:
    html = client.get("/send").get_data(as_text=True)
    for needle in (
        'name="number"',
        'name="files"',
        "multiple",
        'accept=".pdf,.tif,.tiff,.png,.jpg,.jpeg',
        'name="cover_from"',
        'name="cover_to"',
        'name="subject"',
        'name="note"',
        'name="csrf_token"',
        'value="preview"',
        'value="send"',
        'href="/send"',
        'href="/outbound"',
    ):
        assert needle in html, needle


def test_post_without_csrf_is_refused_and_stages_nothing(
    client: FlaskClient, spool_dir: Path, double: OutboundDouble
) -> None:
    r = post_send(client, files=[(png(), "a.png")], token=False)
    assert r.status_code == 400
    assert "security token" in r.get_data(as_text=True)
    assert staged(spool_dir) == []
    assert double.requests == []


def test_empty_number_is_named(client: FlaskClient, spool_dir: Path, double: OutboundDouble) -> None:
    r = post_send(client, files=[(png(), "a.png")], number="  ")
    assert r.status_code == 400
    assert "Enter the fax number to send to." in r.get_data(as_text=True)
    assert double.requests == []


def test_letters_in_number_are_refused(client: FlaskClient, double: OutboundDouble) -> None:
    r = post_send(client, files=[(png(), "a.png")], number="fax=5551234")
    assert r.status_code == 400
    assert "A fax number has digits, spaces, +, -, (, ) and dots only." in r.get_data(as_text=True)
    assert double.requests == []


def test_no_files_is_named(client: FlaskClient, double: OutboundDouble) -> None:
    r = post_send(client, files=[])
    assert r.status_code == 400
    assert "Choose at least one file to send." in r.get_data(as_text=True)
    assert double.requests == []


def test_too_big_is_refused_and_nothing_stays(client: FlaskClient, spool_dir: Path, double: OutboundDouble) -> None:
    half = os.urandom(MAX_BYTES // 2 + 1000)
    r = post_send(client, files=[(half, "one.png"), (half, "two.png")])
    assert r.status_code == 400
    text = r.get_data(as_text=True)
    assert "larger than 200 KB together" in text and "two.png went over it" in text
    assert staged(spool_dir) == []
    assert double.requests == []


def test_preview_stages_safely_and_shows_every_page(
    client: FlaskClient, spool_dir: Path, double: OutboundDouble
) -> None:
    r = post_send(
        client,
        files=[(png("one"), "../../etc/<b id=x>passwd.png"), (png("two"), "two.png")],
        cover_from="Ann",
        subject="Order 7",
    )
    text = r.get_data(as_text=True)
    assert r.status_code == 200, text
    assert "3 pages" in text and "+1 555 123 4567" in text and 'via <span id="preview-route">pbx</span>' in text
    [where] = staged(spool_dir)
    assert sorted(p.name for p in where.iterdir()) == ["1", "2", "names.json", "preview"]
    assert json.loads((where / "names.json").read_text()) == ["<b id=x>passwd.png", "two.png"]
    assert "&lt;b id=x&gt;passwd.png" in text and "<b id=x>" not in text
    req = double.requests[-1]
    assert req == {
        "cmd": "outbound-preview",
        "staging": where.name,
        "number": "555 123 4567",
        "cover": {"from": "Ann", "to": "", "subject": "Order 7", "note": ""},
        "fine": True,
    }
    for n in (1, 2, 3):
        img = client.get(f"/send/preview/{where.name}/{n}.png")
        assert img.status_code == 200 and img.mimetype == "image/png"
        with Image.open(io.BytesIO(img.data)) as im:
            assert im.width == 600
    assert client.get(f"/send/preview/{where.name}/4.png").status_code == 404


def test_staging_token_belongs_to_its_session(
    client: FlaskClient, config: Config, spool_dir: Path, double: OutboundDouble
) -> None:
    post_send(client, files=[(png(), "a.png")])
    [where] = staged(spool_dir)
    other = create_app(config).test_client()
    login(other)
    assert other.get(f"/send/preview/{where.name}/1.png").status_code == 404
    r = post_send(other, staging=where.name)
    assert r.status_code == 400 and "Choose at least one file to send." in r.get_data(as_text=True)
    assert client.get("/send/preview/..%2F..%2Fspool.db/1.png").status_code == 404


def test_send_reuses_the_preview_and_queues(client: FlaskClient, spool_dir: Path, double: OutboundDouble) -> None:
    post_send(client, files=[(png(), "a.png")])
    [where] = staged(spool_dir)
    r = post_send(client, action="send", staging=where.name, resolution="standard")
    assert r.status_code == 302 and r.headers["Location"].endswith("/outbound/1")
    req = double.requests[-1]
    assert req["cmd"] == "outbound-submit" and req["staging"] == where.name and req["cover"] is None
    assert (req["sender"], req["source"], req["fine"]) == ("admin", "web", False)
    assert staged(spool_dir) == []  # the daemon keeps its own copy once queued
    with Image.open(spool_dir / "outbound" / f"{double.jobs[1]['uid']}.tif") as im:
        assert im.width == 1728


def test_daemon_refusal_and_absence_are_shown(client: FlaskClient, sock: Path, spool_dir: Path) -> None:
    r = post_send(client, files=[(png(), "a.png")])
    assert r.status_code == 503
    assert "The fax service is not running" in r.get_data(as_text=True)
    with OutboundDouble(spool_dir).serve(sock):
        r = post_send(client, files=[(png(), "a.png")], number="1 900 555 1234")
    assert r.status_code == 422
    assert "The fax cannot be previewed: premium-rate numbers are not allowed on route pbx" in r.get_data(as_text=True)


def test_old_staging_dirs_are_swept(client: FlaskClient, spool_dir: Path, double: OutboundDouble) -> None:
    root = spool_dir / "outbound-staging"
    old, fresh = root / ("o" * 24), root / ("f" * 24)
    for d in (old, fresh):
        d.mkdir(parents=True)
        (d / "1").write_bytes(b"x")
    os.utime(old, (time.time() - 3700, time.time() - 3700))
    post_send(client, files=[], number="")
    assert not old.exists() and fresh.exists()


def sent_job(client: FlaskClient, double: OutboundDouble, page: bytes | None = None) -> int:
    r = post_send(client, action="send", files=[(page or png(), "a.png")])
    assert r.status_code == 302, r.get_data(as_text=True)
    return int(r.headers["Location"].rsplit("/", 1)[1])


def test_hostile_csi_is_text_on_the_job_page_list_and_json(client: FlaskClient, double: OutboundDouble) -> None:
    job_id = sent_job(client, double)
    time.sleep(0.5 + 0.2 * 2 + 0.6)
    page = client.get(f"/outbound/{job_id}").get_data(as_text=True)
    escaped = "&lt;script&gt;alert(&#39;tsi&#39;)&lt;/script&gt;"
    assert escaped in page and HOSTILE_CSI not in page
    assert "Sent: all 1 pages confirmed by the far end." in page and "14400 bit/s" in page
    assert "received CFR" in page
    listing = client.get("/outbound").get_data(as_text=True)
    assert escaped in listing and HOSTILE_CSI not in listing
    data = client.get(f"/outbound/{job_id}.json").get_json()
    assert data["remote_ident"] == HOSTILE_CSI and data["final"] is True and data["state_label"] == "Sent"
    thumb = client.get(f"/outbound/{job_id}/page/1.png")
    assert thumb.status_code == 200 and thumb.mimetype == "image/png"
    assert client.get(f"/outbound/{job_id}/page/2.png").status_code == 404
    assert client.get("/outbound/99").status_code == 404


def test_cancel_needs_csrf_then_cancels(client: FlaskClient, double: OutboundDouble) -> None:
    double.hold = True
    job_id = sent_job(client, double)
    assert "Cancel this fax" in client.get(f"/outbound/{job_id}").get_data(as_text=True)
    assert client.post(f"/outbound/{job_id}/cancel").status_code == 400
    assert double.list({})["jobs"][0]["state"] == "queued"
    r = client.post(f"/outbound/{job_id}/cancel", data={"csrf_token": csrf(client)}, follow_redirects=True)
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and "Cancelled." in text and "Cancel this fax" not in text
    r = client.post(f"/outbound/{job_id}/cancel", data={"csrf_token": csrf(client)}, follow_redirects=True)
    assert "Not cancelled: it is finished already" in r.get_data(as_text=True)


def test_pages_need_login(config: Config) -> None:
    anon = create_app(config).test_client()
    for path in ("/send", "/outbound", "/outbound/1", "/outbound/1.json", "/outbound/1/page/1.png"):
        assert anon.get(path).status_code in (302, 401), path


def test_upload_names_never_carry_a_path_or_control_characters() -> None:
    from appliance.web.sendfax import safe_name

    assert safe_name("C:\\Users\\ann\\two.png") == "two.png"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("a\x00b\r\n\x1b[31m.png") == "ab[31m.png"
    assert safe_name("dir/") == "file"
    assert len(safe_name("x" * 500 + ".pdf")) == 100


def block_png(box: tuple[int, int, int, int]) -> bytes:
    """A white letter page (850 x 1100) with one black block at ``box``."""
    im = Image.new("L", (850, 1100), 255)
    ImageDraw.Draw(im).rectangle(box, fill=0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def dark_share(im: Image.Image, box: tuple[float, float, float, float]) -> float:
    """The share of dark pixels in ``box``, given as fractions of the image's width and height."""
    g = im.convert("L")
    w, h = g.size
    region = g.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
    hist = region.histogram()
    return sum(hist[:128]) / max(1, sum(hist))


def test_preview_and_sent_page_show_the_uploaded_page(
    client: FlaskClient, spool_dir: Path, double: OutboundDouble
) -> None:
    """The pictures the pages serve are the pages staged: a block top left stays top left."""
    post_send(client, files=[(block_png((85, 110, 340, 440)), "a.png")])
    [where] = staged(spool_dir)
    with Image.open(io.BytesIO(client.get(f"/send/preview/{where.name}/1.png").data)) as im:
        assert dark_share(im, (0.12, 0.12, 0.38, 0.38)) > 0.95
        assert dark_share(im, (0.5, 0.5, 1.0, 1.0)) < 0.01
    job_id = sent_job(client, double, block_png((85, 110, 340, 440)))
    for size in ("thumb", "full"):
        r = client.get(f"/outbound/{job_id}/page/1.png?size={size}")
        assert r.status_code == 200 and r.headers["Cache-Control"] == "private, max-age=3600"
        with Image.open(io.BytesIO(r.data)) as im:
            assert dark_share(im, (0.12, 0.12, 0.38, 0.38)) > 0.95, size
            assert dark_share(im, (0.5, 0.5, 1.0, 1.0)) < 0.01, size
    assert client.get(f"/outbound/{job_id}/page/1.png?size=huge").status_code == 400


def test_pages_say_when_the_daemon_is_down(client: FlaskClient) -> None:
    r = client.get("/outbound")
    assert r.status_code == 200 and "The fax service is not running" in r.get_data(as_text=True)
    assert client.get("/outbound/1").status_code == 503
    r = client.post("/outbound/1/cancel", data={"csrf_token": csrf(client)}, follow_redirects=False)
    assert r.status_code == 302
    assert "The fax service is not running" in client.get("/outbound").get_data(as_text=True)


def test_job_json_follows_the_job(client: FlaskClient, double: OutboundDouble) -> None:
    job_id = sent_job(client, double)
    first = client.get(f"/outbound/{job_id}.json").get_json()
    assert first["state"] in ("queued", "sending") and first["final"] is False and first["cancellable"] is True
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = client.get(f"/outbound/{job_id}.json").get_json()
        if data["final"]:
            break
        time.sleep(0.1)
    assert data == {
        "id": job_id,
        "state": "sent",
        "state_label": "Sent",
        "state_class": "state-delivered",
        "pages": 1,
        "pages_confirmed": 1,
        "words": "Sent: all 1 pages confirmed by the far end.",
        "remote_ident": HOSTILE_CSI,
        "final": True,
        "cancellable": False,
    }

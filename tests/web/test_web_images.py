"""Page images rendered from the fax TIFF, the disk cache, and the TIFF download."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image
from webfax import FAX_WIDTH, FINE, HEIGHT, STANDARD, T0, XSS, add_fax, black_box

from appliance.config import Config
from appliance.spool.store import FaxRecord, Spool
from webauth import authed

from appliance.web import render
from appliance.web.app import create_app
from tests.budgets import LOADED


def png(client: FlaskClient, url: str) -> Image.Image:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code)
    assert r.mimetype == "image/png"
    im = Image.open(io.BytesIO(r.data))
    assert im.format == "PNG"
    return im.convert("L")


def test_standard_resolution_page_is_stretched_to_true_proportions(client: FlaskClient,
                                                                   full_fax: FaxRecord) -> None:
    im = png(client, f"/faxes/{full_fax.id}/pages/1.png?size=full")
    ratio = 204 / 98
    assert im.size == (FAX_WIDTH, round(HEIGHT[98] * ratio))
    x0, y0, x1, y1 = black_box(1)
    mid_x = (x0 + x1) // 2
    # rows 100..300 of the source land on 208..624: black inside, white just outside
    assert im.getpixel((mid_x, round(y0 * ratio) + 4)) == 0
    assert im.getpixel((mid_x, 500)) == 0     # source row 240; unscaled, row 500 would be white
    assert im.getpixel((mid_x, 150)) == 255   # source row 72; unscaled, row 150 would be black
    assert im.getpixel((mid_x, round(y1 * ratio) + 4)) == 255
    assert im.getpixel((x0 - 5, 400)) == 255 and im.getpixel((x1 + 5, 400)) == 255


def test_each_page_shows_its_own_content(client: FlaskClient, full_fax: FaxRecord) -> None:
    for n in (1, 2, 3):
        im = png(client, f"/faxes/{full_fax.id}/pages/{n}.png?size=full")
        for m in (1, 2, 3):
            x0, _, x1, _ = black_box(m)
            assert im.getpixel(((x0 + x1) // 2, 400)) == (0 if m == n else 255), (n, m)


def test_fine_resolution_and_mixed_pages(client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0, dpis=[FINE, STANDARD])
    fine = png(client, f"/faxes/{fax.id}/pages/1.png?size=full")
    std = png(client, f"/faxes/{fax.id}/pages/2.png?size=full")
    assert fine.size == (FAX_WIDTH, round(HEIGHT[196] * 204 / 196))
    assert std.size == (FAX_WIDTH, round(HEIGHT[98] * 204 / 98))
    x0, y0, x1, y1 = black_box(1)
    assert fine.getpixel(((x0 + x1) // 2, round(250 * 204 / 196))) == 0
    assert fine.getpixel(((x0 + x1) // 2, round(350 * 204 / 196))) == 255


def test_thumbnail_is_small_and_shows_the_box(client: FlaskClient, full_fax: FaxRecord) -> None:
    im = png(client, f"/faxes/{full_fax.id}/pages/1.png?size=thumb")
    scale = render.THUMB_WIDTH / FAX_WIDTH
    assert im.size == (render.THUMB_WIDTH, round(HEIGHT[98] * 204 / 98 * scale))
    x0, y0, x1, y1 = black_box(1)
    centre = (round((x0 + x1) / 2 * scale), round((y0 + y1) / 2 * 204 / 98 * scale))
    assert im.getpixel(centre) < 40
    assert im.getpixel((centre[0], im.height // 2)) > 215
    assert im.getpixel((im.width - 5, centre[1])) > 215


def test_page_numbers_out_of_range_are_404(client: FlaskClient, full_fax: FaxRecord) -> None:
    for n in (0, 4, 99):
        r = client.get(f"/faxes/{full_fax.id}/pages/{n}.png?size=thumb")
        assert r.status_code == 404, n
    assert client.get(f"/faxes/{full_fax.id}/pages/-1.png").status_code == 404
    assert client.get(f"/faxes/999/pages/1.png").status_code == 404


def test_fax_without_image_has_no_pages(client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0)
    assert fax.state == "no_fax"
    assert client.get(f"/faxes/{fax.id}/pages/1.png").status_code == 404
    assert client.get(f"/faxes/{fax.id}.tif").status_code == 404


def test_bad_size_is_400(client: FlaskClient, full_fax: FaxRecord) -> None:
    r = client.get(f"/faxes/{full_fax.id}/pages/1.png?size=huge")
    assert r.status_code == 400
    assert "Parameter &#39;size&#39;" in r.get_data(as_text=True)


def test_pages_are_rendered_once_and_cached_on_disk(config: Config, full_fax: FaxRecord,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str]] = []
    real = render.render_page

    def counting(tiff: Path, page: int, size: str) -> Image.Image:
        calls.append((page, size))
        return real(tiff, page, size)

    monkeypatch.setattr(render, "render_page", counting)
    url = f"/faxes/{full_fax.id}/pages/2.png?size=thumb"
    first = authed(create_app(config)).get(url)
    again = authed(create_app(config)).get(url)  # a restarted web process, too
    full = authed(create_app(config)).get(url.replace("thumb", "full"))
    assert first.status_code == again.status_code == full.status_code == 200
    assert first.data == again.data and first.data != full.data
    assert calls == [(2, "thumb"), (2, "full")]
    cache = config.path(config.spool.dir) / "cache"
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted([render.cache_name(full_fax.uid, 2, "thumb"),
                            render.cache_name(full_fax.uid, 2, "full")])
    assert (cache / render.cache_name(full_fax.uid, 2, "thumb")).read_bytes() == first.data


def test_concurrent_requests_render_a_page_once(config: Config, full_fax: FaxRecord,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    calls = []
    real = render.render_page

    def slow(tiff: Path, page: int, size: str) -> Image.Image:
        calls.append(page)
        time.sleep(0.2)
        return real(tiff, page, size)

    monkeypatch.setattr(render, "render_page", slow)
    app = create_app(config)
    statuses: list[int] = []
    clients = [authed(app) for _ in range(4)]  # logged in first: at most 2 password checks run at once

    together = threading.Barrier(len(clients))  # all four ask at once, however late a thread starts

    def fetch(client: FlaskClient) -> None:
        together.wait(LOADED)
        statuses.append(client.get(f"/faxes/{full_fax.id}/pages/3.png?size=full").status_code)

    threads = [threading.Thread(target=fetch, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4 and calls == [3]


def test_cache_names_are_safe_and_distinct() -> None:
    names = {render.cache_name(uid, 1, "thumb") for uid in ("../../etc/passwd", "a/b", "a_b", "a b")}
    assert len(names) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+-[0-9a-f]{16}-p1-thumb\.png", n) for n in names)


def test_image_responses_are_privately_cacheable(client: FlaskClient, full_fax: FaxRecord) -> None:
    r = client.get(f"/faxes/{full_fax.id}/pages/1.png?size=thumb")
    assert r.headers["Cache-Control"] == "private, max-age=3600"
    assert r.headers.get("ETag")
    again = client.get(f"/faxes/{full_fax.id}/pages/1.png?size=thumb",
                       headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_tiff_download_is_the_file_with_a_safe_name(client: FlaskClient, spool: Spool) -> None:
    fax = add_fax(spool, T0, dpis=[STANDARD, FINE], remote_ident=XSS, caller_name='a"; b=c\r\nX: y')
    r = client.get(f"/faxes/{fax.id}.tif")
    assert r.status_code == 200
    assert r.mimetype == "image/tiff"
    path = spool.image_path(fax)
    assert path is not None and r.data == path.read_bytes()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(T0))
    assert r.headers["Content-Disposition"] == f"attachment; filename=fax-{stamp}-{fax.id}.tif"
    assert r.headers["Cache-Control"] == "private, no-cache"
    with Image.open(io.BytesIO(r.data)) as im:
        assert im.n_frames == 2

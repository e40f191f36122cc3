"""render_in_child: the real child process, its limits, and what a killed child becomes."""

from __future__ import annotations

import io
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from appliance.fax.pagelimits import frame_dpi, open_tiff
from appliance.fax.pages import FAX_WIDTH, read_pages
from appliance.outbound.cover import Cover
from appliance.outbound.render import RenderRefused, render_pages
from appliance.outbound.renderjob import render_in_child
from tests.outbound.test_render import bar, gradient, pdf, pdf_objects, png, stream, text_content


def run(tmp_path: Path, docs: list[tuple[str, bytes]], **kw: object) -> tuple[int, Path]:
    paths = []
    for i, (_name, data) in enumerate(docs):
        p = tmp_path / f"in{i}"
        p.write_bytes(data)
        paths.append(p)
    out = tmp_path / "out.tif"
    args: dict[str, object] = {"fine": True, "cover": None, "body_text": "", "max_pages": 50, "max_bytes": 20_000_000}
    args.update(kw)
    n = render_in_child(paths, [name for name, _ in docs], out, **args)  # type: ignore[arg-type]
    return n, out


def test_child_writes_the_same_pages_as_in_process(tmp_path: Path):
    docs = [("a.pdf", pdf([text_content(), bar(2)])), ("g.png", png(gradient()))]
    cover = Cover(from_="Alice", to="Bob", subject="Quote", note="See attached.", date="2026-12-08 10:00")
    n, out = run(tmp_path, docs, cover=cover, body_text="Hello")
    want = render_pages(docs, fine=True, cover=cover, body_text="Hello", max_pages=50, max_bytes=20_000_000)
    assert n == len(want) == 5
    got = read_pages(out)
    for g, w in zip(got, want, strict=True):
        assert g.width == FAX_WIDTH
        assert ImageChops.difference(g, w.convert("L")).getbbox() is None
    with open_tiff(out) as im:
        assert frame_dpi(im) == (204, 196)
        assert im.info["compression"] == "group4"


def test_standard_resolution_in_the_tiff(tmp_path: Path):
    n, out = run(tmp_path, [("a.txt", b"standard\n")], fine=False)
    assert n == 1
    with open_tiff(out) as im:
        assert frame_dpi(im) == (204, 98)
        assert im.size == (FAX_WIDTH, (11 * 98))


def test_refusal_comes_back_as_render_refused(tmp_path: Path):
    with pytest.raises(RenderRefused, match=r"^notes\.docx: only PDF, TIFF, PNG, JPEG and plain text can be faxed"):
        run(tmp_path, [("notes.docx", b"PK\x03\x04" + b"\x00" * 100)])
    assert not (tmp_path / "out.tif").exists()


def test_total_size_refused_before_the_child_starts(tmp_path: Path):
    with pytest.raises(RenderRefused, match=r"^b\.txt: the documents are more than"):
        run(tmp_path, [("a.txt", b"a" * 600), ("b.txt", b"b" * 600)], max_bytes=1000)


def deflate_bomb() -> bytes:
    """1 MB that inflates to 1 GiB of content stream."""
    c = zlib.compressobj(9)
    z = b"".join(c.compress(b" " * (1 << 24)) for _ in range(64)) + c.flush()
    return pdf_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            stream(z, b"/Filter /FlateDecode"),
        ]
    )


def test_deflate_bomb_is_refused_by_the_memory_limit(tmp_path: Path):
    t = time.perf_counter()
    with pytest.raises(RenderRefused) as e:
        run(tmp_path, [("fine.txt", b"ok\n"), ("bomb.pdf", deflate_bomb())], memory_mb=400)
    assert str(e.value) == "bomb.pdf: the document needs more than 400 MB of memory to render"
    assert time.perf_counter() - t < 30
    assert not (tmp_path / "out.tif").exists()  # the first file's page was written: removed


def form_bomb(depth: int = 6) -> bytes:
    """3 KB: a form drawing a form ten times, six deep: 100,000 page-sized fills, minutes to render."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /X 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        stream(b"/X Do"),
    ]
    for d in range(depth):
        if d == depth - 1:
            objs.append(stream(b"0 0 1 rg 10 10 500 700 re f", b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]"))
        else:
            body = b"".join(b"q 0.99 0 0 0.99 %d %d cm /X Do Q\n" % (i, i) for i in range(10))
            objs.append(
                stream(
                    body,
                    b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /X %d 0 R >> >>"
                    % (6 + d),
                )
            )
    return pdf_objects(objs)


def test_cpu_bomb_is_stopped_by_the_time_limits(tmp_path: Path):
    t = time.perf_counter()
    with pytest.raises(RenderRefused) as e:
        run(tmp_path, [("slow.pdf", form_bomb())], timeout=3.0)
    assert str(e.value) in (
        "slow.pdf: the document took longer than 3 s to render",
        "slow.pdf: the document needs more than 3 s of processing to render",
    )
    assert time.perf_counter() - t < 10


def test_100000_page_pdf_refused_quickly_in_the_child(tmp_path: Path):
    kids = b" ".join([b"3 0 R"] * 100_000)
    doc = pdf_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count 100000 >>" % kids,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ]
    )
    t = time.perf_counter()
    with pytest.raises(RenderRefused, match=r"^many\.pdf: the fax would have more than 50 pages \(100,000 in"):
        run(tmp_path, [("many.pdf", doc)])
    assert time.perf_counter() - t < 10


def test_malformed_tiff_refused_in_the_child(tmp_path: Path):
    good = io.BytesIO()
    Image.new("1", (FAX_WIDTH, 2000), 1).save(good, "TIFF", compression="group4", dpi=(204, 196))
    data = bytearray(good.getvalue())
    data[4:8] = (len(data) + 1000).to_bytes(4, "little")  # the first directory points past the end
    with pytest.raises(RenderRefused, match=r"^fax\.tif: the TIFF is damaged"):
        run(tmp_path, [("fax.tif", bytes(data))])


def test_fifty_pages_are_written_one_at_a_time(tmp_path: Path):
    """50 decoded pages at once would need ~390 MB; written as they come, 200 MB is plenty."""
    content = text_content(lines=50)
    n, out = run(tmp_path, [("long.pdf", pdf([content] * 50))], memory_mb=200)
    assert n == 50
    with open_tiff(out) as im:
        assert im.n_frames == 50


def test_any_text_from_a_sender_reaches_the_child_safely(tmp_path: Path):
    odd = "caf\u00e9 \U0001f4e0 \udc80 \x1b[31m \u202e\u0000"
    cover = Cover(from_=odd, to=odd, subject=odd, note=odd * 3)
    text = "caf\u00e9 \U0001f4e0 \u202e \u00e4\n".encode()
    n, out = run(tmp_path, [("a.txt", text)], cover=cover, body_text=odd)
    assert n == 3
    with open_tiff(out) as im:
        assert im.n_frames == 3

"""A poison fax at delivery: the refused page is left out undecoded, one page at a time, and named.

Decision: a fax with a refused page is delivered without it, marked incomplete, the mail naming
the page and the reason; a fax whose every page was refused gets a mail that says so and attaches
nothing.  The stored TIFF never goes out as a fallback while it holds a refused page.
"""

from __future__ import annotations

import email
import email.policy
import io

import pikepdf
import pytest
from PIL import ImageChops

from appliance.delivery import tiff_profiles as tp
from appliance.delivery.message import render_message
from tiff_check import check_profile_s
from appliance.spool.store import FaxRecord
from tests.poisonfax import REFUSED_PAGE_SLACK, fax_tiff, good_page, peak_rss, poison_page, without_width


def pages_of(data: bytes) -> list:
    from appliance.fax.pagelimits import open_tiff

    out = []
    with open_tiff(io.BytesIO(data)) as im:
        for n in range(im.n_frames):
            im.seek(n)
            out.append(im.convert("L"))
    return out


def same(a, b) -> bool:
    return a.size == b.size and ImageChops.difference(a.convert("L"), b.convert("L")).getbbox() is None


@pytest.fixture(scope="module")
def mixed():
    """Three pages, the second a 1728 x 80,000 G4 page of 10 KB."""
    (im1, c1), (im3, c3) = good_page(1), good_page(3)
    return [im1, im3], fax_tiff([c1, poison_page(), c3])


def test_tiff_f_leaves_the_refused_page_out_and_keeps_the_others_pixel_for_pixel(mixed):
    images, data = mixed
    assert not tp.is_tiff_f(data), "a file with a refused page is never passed through"
    got = pages_of(tp.to_tiff_f(data))
    assert len(got) == 2 and all(same(g, s) for g, s in zip(got, images))


def test_profile_s_and_pdf_leave_the_refused_page_out(mixed):
    images, data = mixed
    out = tp.to_profile_s(data)
    assert check_profile_s(out) == []
    got = pages_of(out)
    assert len(got) == 2 and all(same(g, s) for g, s in zip(got, images))
    with pikepdf.open(io.BytesIO(tp.to_pdf(data))) as pdf:
        assert len(pdf.pages) == 2


def test_a_normal_fax_is_still_passed_through_unchanged():
    data = fax_tiff([good_page(n)[1] for n in (1, 2, 3)])
    assert tp.is_tiff_f(data) and tp.to_tiff_f(data) == data
    assert tp.oversized_pages(data) == []


@pytest.mark.parametrize("convert", ["to_tiff_f", "to_profile_s", "to_pdf"])
def test_a_poison_only_fax_is_refused_with_a_clear_error(convert):
    with pytest.raises(ValueError, match="no page to deliver"):
        getattr(tp, convert)(fax_tiff([poison_page()]))


#: converts the file named in argv[2] with tiff_profiles.<argv[1]>, as the delivery worker does
CONVERT = """
import sys
from pathlib import Path
from appliance.delivery import tiff_profiles
try:
    out = getattr(tiff_profiles, sys.argv[1])(Path(sys.argv[2]).read_bytes())
    print("converted", len(out) > 0)
except ValueError as e:
    print("refused:", e)
"""


@pytest.mark.parametrize("convert", ["to_tiff_f", "to_profile_s", "to_pdf"])
def test_converting_a_poison_page_costs_no_more_memory_than_a_normal_page(tmp_path, convert):
    _, good = good_page(1)
    (tmp_path / "normal.tif").write_bytes(fax_tiff([good]))
    (tmp_path / "poison.tif").write_bytes(fax_tiff([poison_page()]))
    normal, out = peak_rss(CONVERT, convert, str(tmp_path / "normal.tif"))
    assert out == "converted True"
    poison, out = peak_rss(CONVERT, convert, str(tmp_path / "poison.tif"))
    assert poison < normal + REFUSED_PAGE_SLACK, (
        f"{convert} of the poison page peaked at {poison / 2**20:.0f} MiB, of a normal page at "
        f"{normal / 2**20:.0f} MiB")
    assert out == "refused: fax image has no page to deliver"


def fax(**kw) -> FaxRecord:
    base = dict(id=7, uid="0123456789abcdef", state="received", created=1_700_000_000.0,
                finished=1_700_000_060.0, complete=False, caller_number="+1 555 0100", pages=2,
                result_code=0, image="faxes/0123456789abcdef.tif", extra={})
    base.update(kw)
    return FaxRecord(**base)


REASON = ("page 2 is 80,000 rows long at 196 lines per inch (10.37 m); a fax page is at most 1.5 m "
          "(11,575 rows at this resolution)")


def render(f: FaxRecord, image: bytes):
    msg = render_message(f, "sales@example.com", from_addr="fax@example.com", image=image,
                         message_id="<0123456789abcdef.1@faxbridge>")
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)


def test_the_mail_names_the_refused_page_and_carries_the_others(mixed):
    images, data = mixed
    refused = [{"page": 2, "width": 1728, "rows": 80000, "ydpi": 196.0, "reason": REASON}]
    m = render(fax(extra={"refused_pages": refused, "route": {"format": "both"}}), data)
    assert m["Subject"] == "Incomplete fax from +1 555 0100 (2 pages, 1 refused as too large)"
    plain = m.get_body(("plain",)).get_content()
    assert plain.startswith("PAGE REFUSED: " + REASON) and "kept on the fax appliance" in plain
    assert "call ended" not in plain, "not the wording of a dropped call"
    tiffs = [p for p in m.iter_attachments() if p.get_content_type() == "image/tiff"]
    pdfs = [p for p in m.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert len(tiffs) == 1 and len(pdfs) == 1
    got = pages_of(tiffs[0].get_content())
    assert len(got) == 2 and all(same(g, s) for g, s in zip(got, images))


def test_a_fax_whose_only_page_was_refused_gets_a_mail_with_nothing_attached():
    data = fax_tiff([poison_page()])
    refused = [{"page": 1, "width": 1728, "rows": 80000, "ydpi": 196.0, "reason": REASON.replace("page 2", "page 1")}]
    m = render(fax(pages=0, extra={"refused_pages": refused, "route": {"format": "both"}}), data)
    assert m["Subject"] == "Refused fax from +1 555 0100 (1 page too large)"
    assert m["X-FaxNumberOfPages"] == "0"
    assert list(m.iter_attachments()) == []
    plain = m.get_body(("plain",)).get_content()
    assert plain.startswith("NO PAGE DELIVERED: page 1 is 80,000 rows long")
    assert "nothing is attached" in plain


def test_the_stored_file_is_never_the_fallback_while_it_holds_a_refused_page():
    """A conversion that fails would attach the stored TIFF as received: not with a poison page in it."""
    _, good = good_page(1)
    broken = type(good)(1728, 2287, (204, 196), bytes(400))  # does not decode
    data = fax_tiff([good, poison_page(), broken])
    m = render(fax(extra={}), data)  # even when the record does not say (an older record)
    assert [p.get_content_type() for p in m.iter_attachments()] == []
    normal = fax_tiff([good, broken])
    m = render(fax(extra={}), normal)
    (att,) = m.iter_attachments()
    assert att.get_content() == normal, "without a refused page the fallback is unchanged"


def test_a_call_ended_for_a_page_growing_too_large_says_so(mixed):
    """Without ECM the daemon hangs up on the page while it grows: the mail says why the fax ends early."""
    from appliance.fax.pagelimits import PAGE_TOO_LARGE

    why = f"{PAGE_TOO_LARGE}: " + REASON.replace("80,000", "11,719").replace("10.37", "1.52")
    m = render(fax(pages=1, extra={"hangup_reason": why}), fax_tiff([good_page(1)[1]]))
    plain = m.get_body(("plain",)).get_content()
    assert plain.startswith(f"INCOMPLETE FAX: the fax appliance ended the call: {why}."), plain[:300]
    assert m["Subject"] == "Incomplete fax from +1 555 0100 (1 page received)"


def test_a_damaged_page_directory_is_a_value_error_not_a_crash_of_delivery():
    """Found by the tiff_pages fuzz target (a fax cut off in its second page): Pillow reports a
    directory without ImageWidth as TypeError, which the converters let through, past delivery's
    except clauses; the walk that names refused pages raised it too."""
    _, page = good_page(1, rows=200)
    data = without_width(fax_tiff([page, page]), 2)
    assert tp.oversized_pages(data) == []
    assert tp.is_tiff_f(data) is False
    for convert in (tp.to_profile_s, tp.to_tiff_f, tp.to_pdf):
        with pytest.raises(ValueError, match="does not decode"):
            convert(data)


def test_a_resolution_that_would_stretch_a_page_to_kilometres_is_refused_before_scaling():
    """Found by the tiff_pages fuzz target's contract (the input made by hand): Profile S scales a
    page wider than 1728 dots by its x resolution, so 1729 x 1000 dots at 1,000,000 x 196 dpi
    became 2.4 million rows, gigabytes allocated in the daemon."""
    data = fax_tiff([poison_page(rows=1000, width=1729, dpi=(1_000_000, 196))])
    with pytest.raises(ValueError, match="at most 1.5 m"):
        tp.to_profile_s(data)

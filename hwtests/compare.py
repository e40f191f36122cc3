"""Test pages for the bench, and the pixel comparison of a delivered fax with what was sent.

    python -m hwtests.compare pages DIR [--count 3]
        DIR/bench-pages.tif  the pages as one fax TIFF (send-test-fax, or print it for a fax machine)
        DIR/page1.tif ...    each page as efax 0.9a reads it (single-strip G3), for a second modem
    python -m hwtests.compare check RECEIVED SENT.tif [SENT2.tif ...] [--efax]
        PASS when every page of RECEIVED (the .tif, or the mail it came in) equals the sent pages
        pixel for pixel; --efax compares
        below the header line efax adds (20 rows pushed in on top, compared from row 40).

A page from a paper fax machine went through a scanner: it cannot be pixel-equal, and BENCH.md
checks it by eye. Exit status 1 on a difference.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hwtests.benchparse import compare_pages, read_tiff_pages

#: efax's header: rows it adds on top of each page, and the sent row from which pages must match
#: (measured in tests/modem/test_virtual_line.py)
EFAX_SHIFT = 20
EFAX_FROM_ROW = 40


def write_pages(out: Path, count: int) -> list[Path]:
    from appliance.fax.pages import FINE, write_fax_tiff
    from appliance.fax.testpages import demo_pages

    out.mkdir(parents=True, exist_ok=True)
    pages = demo_pages(count)
    written = [out / "bench-pages.tif"]
    write_fax_tiff(pages, written[0])
    for n, im in enumerate(pages, 1):
        raw, single = out / f".raw{n}.tif", out / f"page{n}.tif"
        im.convert("1").save(raw, compression="group3", dpi=FINE)
        subprocess.run(["tiffcp", "-c", "g3", "-r", "100000", str(raw), str(single)], check=True)
        raw.unlink()
        written.append(single)
    return written


def fax_image(data: bytes) -> bytes:
    """The TIFF itself, or the one TIFF attached to a mail (a .eml, or a Maildir file as
    ``python -m aiosmtpd -c aiosmtpd.handlers.Mailbox`` keeps them)."""
    if data[:4] in (b"II*\0", b"MM\0*"):
        return data
    import email
    import email.policy

    msg = email.message_from_bytes(data, policy=email.policy.default)
    tiffs = [part for part in msg.iter_attachments() if part.get_content_type() == "image/tiff"]  # type: ignore[attr-defined]
    if len(tiffs) != 1:
        raise SystemExit(f"neither a TIFF nor a mail with one TIFF attached ({len(tiffs)} found)")
    return tiffs[0].get_content()


def check(received: Path, sent: list[Path], skip_top: int, shift: int) -> list[str]:
    sent_pages = [p for f in sent for p in read_tiff_pages(f.read_bytes())]
    got = read_tiff_pages(fax_image(received.read_bytes()))
    return compare_pages(sent_pages, got, skip_top=skip_top, shift=shift)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwtests.compare", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("pages", help="write the bench's test pages")
    w.add_argument("dir", type=Path)
    w.add_argument("--count", type=int, default=3)
    c = sub.add_parser("check", help="compare a received fax with the sent pages")
    c.add_argument("received", type=Path)
    c.add_argument("sent", type=Path, nargs="+")
    c.add_argument("--efax", action="store_true", help=f"sent with efax: --shift {EFAX_SHIFT} --skip-top {EFAX_FROM_ROW}")
    c.add_argument("--shift", type=int, default=0, help="rows a sending program added on top of each page")
    c.add_argument("--skip-top", type=int, default=0, help="compare the sent pages from this row on")
    args = p.parse_args(argv)
    if args.cmd == "pages":
        for f in write_pages(args.dir, args.count):
            print(f)
        return 0
    shift, skip = (EFAX_SHIFT, EFAX_FROM_ROW) if args.efax else (args.shift, args.skip_top)
    problems = check(args.received, args.sent, skip, shift)
    for problem in problems:
        print(f"FAIL     {problem}")
    if not problems:
        print(f"PASS     {args.received} equals the sent pages pixel for pixel"
              + (f" (below row {skip}, {shift} header rows)" if shift or skip else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

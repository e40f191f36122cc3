"""Test pages with text and graphics: the demo fax users send to check an installation.

Deterministic for a given seed, so tests can regenerate the exact pages they sent.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw, ImageFont

from appliance.fax.pages import FAX_WIDTH, FINE


def demo_pages(count: int = 3, dpi: tuple[int, int] = FINE, seed: int = 1) -> list[Image.Image]:
    """``count`` letter-sized pages at ``dpi``: a heading, text lines, boxes, circles and a grid."""
    rng = random.Random(seed)
    height = round(11 * dpi[1])  # US letter, 11 inches
    try:
        big = ImageFont.load_default(size=max(12, dpi[1] // 3))
        small = ImageFont.load_default(size=max(8, dpi[1] // 8))
    except TypeError:  # Pillow without FreeType: bitmap font
        big = small = ImageFont.load_default()
    yscale = dpi[1] / 196
    pages = []
    for n in range(1, count + 1):
        im = Image.new("1", (FAX_WIDTH, height), 1)
        d = ImageDraw.Draw(im)
        d.text((120, int(80 * yscale)), f"Faxbridge test page {n} of {count}", font=big, fill=0)
        for line in range(12):
            words = " ".join(
                rng.choice(
                    [
                        "fax",
                        "page",
                        "Exchange",
                        "mailbox",
                        "T.30",
                        "ECM",
                        "V.17",
                        "spandsp",
                        "gateway",
                        "1728",
                        "pixels",
                    ]
                )
                for _ in range(9)
            )
            d.text((120, int((260 + line * 40) * yscale)), words, font=small, fill=0)
        top = int(900 * yscale)
        d.rectangle((120, top, 820, top + int(400 * yscale)), outline=0, width=6)
        d.ellipse((900 + n * 30, top, 1500, top + int(500 * yscale)), fill=0)
        for x in range(120, 1600, 48):  # a grid: fine detail that shows any lost row
            d.line((x, top + int(600 * yscale), x, top + int(900 * yscale)), fill=0, width=2)
        for y in range(top + int(600 * yscale), top + int(900 * yscale), max(4, int(24 * yscale))):
            d.line((120, y, 1600, y), fill=0, width=1)
        d.polygon([(200, height - 300), (700, height - 600), (1200, height - 250)], fill=0)
        pages.append(im)
    return pages

"""Fax pages as PNG for the browser, rendered from the spool's TIFF and cached on disk.

Fax TIFFs are 1-bit G3/G4 with non-square pixels (204x98 or 204x196 dpi), so the height is
scaled by the x/y dpi ratio for display; otherwise a standard-resolution page looks squashed
to half its height.  Decoding a G4 page costs real CPU on a small board, so each (fax, page,
size) is rendered once and kept under ``<spool>/cache/``; the web process is the only writer.

Only the one page asked for is decoded, and only when it is within the limits of
``appliance.fax.pagelimits``: a page refused for its size (the spool has recorded why) is shown
as a small card saying so, drawn without decoding a row of it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from appliance.fax.pagelimits import MAX_PAGE_PIXELS, PageTooLarge, check_frame, open_tiff

SIZES = ("thumb", "full")
#: thumbnail width in pixels; a 1728-dot page becomes about 1/7 of its width
THUMB_WIDTH = 240

#: striped locks: bounded memory, and two requests for one page always share a lock
_locks = tuple(threading.Lock() for _ in range(32))


class PageNotFound(LookupError):
    """The TIFF has no such page."""


def page_count(tiff: Path) -> int:
    """Number of pages in the TIFF (walks the directory chain only, decodes nothing)."""
    with open_tiff(tiff) as im:
        return int(getattr(im, "n_frames", 1))


def aspect_ratio(info: dict[str | tuple[int, int], Any]) -> float:
    """x/y resolution ratio of one TIFF page (from PIL's ``Image.info``); 1.0 when the file does not say."""
    dpi = info.get("dpi") or info.get("resolution")
    if dpi is None:
        return 1.0
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return 1.0
    if x <= 0 or y <= 0:
        return 1.0
    return min(max(x / y, 0.25), 4.0)


def render_page(tiff: Path, page: int, size: str) -> Image.Image:
    """Page `page` (1-based) of `tiff` scaled for display; raises PageNotFound, or PageTooLarge
    (before decoding anything) for a page over the size limits."""
    with open_tiff(tiff) as im:
        if not 1 <= page <= getattr(im, "n_frames", 1):
            raise PageNotFound(page)
        im.seek(page - 1)
        check_frame(im, page)
        ratio = aspect_ratio(im.info)
        im.load()
        width, height = im.size
        height = max(1, round(height * ratio))
        if width * height > MAX_PAGE_PIXELS:
            # a resolution far from square stretches a page within the budget past it (up to 4x):
            # shown smaller, in proportion, rather than larger than a page may decode to
            scale = math.sqrt(MAX_PAGE_PIXELS / (width * height))
            width, height = max(1, int(width * scale)), max(1, int(height * scale))
        if size == "full":
            # Nearest keeps a 1-bit page crisp and small: standard resolution just repeats rows.
            # (a fax page already is "1": converting it first would only copy the decoded page)
            page_1 = im if im.mode == "1" else im.convert("1")
            return page_1.resize((width, height), Image.Resampling.NEAREST)
        tw = min(THUMB_WIDTH, width)
        th = max(1, round(height * tw / width))
        return im.convert("L").resize((tw, th), Image.Resampling.BOX)


#: the card shown instead of a refused page: letter-shaped, as wide as the thumbnail or a half page
CARD_WIDTH = {"thumb": THUMB_WIDTH, "full": 864}


def refused_card(reason: str, size: str) -> Image.Image:
    """A small grey card saying why the page is not shown (it is never decoded)."""
    width = CARD_WIDTH.get(size, THUMB_WIDTH)
    card = Image.new("L", (width, width * 11 // 8), 235)
    draw = ImageDraw.Draw(card)
    chars = max(12, width // 7)  # the default bitmap font is about 6 pixels a character
    words, lines, line = f"Not shown: {reason}".split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for n, text in enumerate(lines[: card.height // 14 - 1]):
        draw.text((8, 8 + 14 * n), text, fill=0)
    return card


def cache_name(uid: str, page: int, size: str) -> str:
    """A file name safe for any uid: readable prefix plus a hash so distinct uids never collide."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", uid)[:40]
    digest = hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe}-{digest}-p{page}-{size}.png"


def cached_page(cache_dir: Path, uid: str, tiff: Path, page: int, size: str) -> Path:
    """Path of the rendered PNG, rendering it first if it is not cached yet.

    A per-file lock makes concurrent requests for the same page wait for one render instead of
    each decoding the TIFF; the file appears atomically (temp file + rename).
    """
    if size not in SIZES:
        raise ValueError(size)
    target = cache_dir / cache_name(uid, page, size)
    if target.exists():
        return target
    with _lock_for(str(target)):
        if target.exists():
            return target
        try:
            image = render_page(tiff, page, size)
        except PageTooLarge as e:
            image = refused_card(str(e), size)
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as f:
                image.save(f, format="PNG", optimize=size == "thumb")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


def _lock_for(key: str) -> threading.Lock:
    return _locks[int(hashlib.blake2s(key.encode("utf-8", "surrogatepass")).hexdigest(), 16) % len(_locks)]

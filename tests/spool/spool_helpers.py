"""Real multi-page fax TIFFs made with Pillow, whole or with a damaged last page."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def make_tiff(pages: int, *, compression: str = "group4") -> bytes:
    """A bilevel 1728-pixel-wide fax, each page visibly different."""
    frames = []
    for i in range(pages):
        im = Image.new("1", (1728, 1100), 1)
        draw = ImageDraw.Draw(im)
        draw.rectangle((100 + 40 * i, 100, 900, 500), fill=0)
        draw.text((200, 700), f"page {i + 1}", fill=0)
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:],
                   compression=compression, dpi=(204, 196))
    return buf.getvalue()


def damage_last_page(data: bytes) -> bytes:
    """Zero the last page's strips: its IFD stays, its image no longer decodes."""
    with Image.open(io.BytesIO(data)) as im:
        im.seek(im.n_frames - 1)
        offsets, counts = im.tag_v2[273], im.tag_v2[279]
    out = bytearray(data)
    for off, n in zip(offsets, counts):
        out[off:off + n] = bytes(n)
    return bytes(out)

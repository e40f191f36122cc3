"""The tests' own RFC 3949 Profile S checker: walks the raw TIFF structure, returns the problems found.

Pillow and libtiff read almost anything, so they cannot tell us whether a file is strict Profile
S; Exchange and Internet-fax offramps can be stricter.  This reads the bytes itself.
"""

from __future__ import annotations

import struct

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
#: the only tags Profile S allows (RFC 3949 section 3); Orientation is not among them
ALLOWED = {254, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 282, 283, 292, 296, 297}
REQUIRED = ALLOWED  # every allowed field is also required in Profile S


def _values(data: bytes, typ: int, count: int, field: bytes) -> list[float]:
    size = _TYPE_SIZES.get(typ, 1) * count
    raw = field[:size] if size <= 4 else None
    if raw is None:
        (off,) = struct.unpack("<I", field)
        raw = data[off: off + size]
        if len(raw) != size:
            raise ValueError("value outside the file")
    if typ == 3:
        return list(struct.unpack(f"<{count}H", raw))
    if typ == 4:
        return list(struct.unpack(f"<{count}I", raw))
    if typ == 5:
        nums = struct.unpack(f"<{2 * count}I", raw)
        return [nums[i] / nums[i + 1] if nums[i + 1] else float("nan") for i in range(0, 2 * count, 2)]
    return list(raw)


def check_profile_s(data: bytes) -> list[str]:
    """Every way ``data`` breaks RFC 3949 Profile S (empty list: conforming)."""
    problems: list[str] = []
    if data[:4] != b"II*\x00":
        return ["byte order is not II (little-endian) or magic is not 42"]
    (offset,) = struct.unpack("<I", data[4:8])
    if offset != 8:
        problems.append(f"first IFD at {offset}, not 8")
    pages: list[dict[int, list[float]]] = []
    seen: set[int] = set()
    last_end = 8
    while offset:
        if offset in seen or offset + 2 > len(data):
            problems.append(f"IFD offset {offset} loops or lies outside the file")
            break
        seen.add(offset)
        if offset < last_end:
            problems.append(f"page {len(pages) + 1}: IFD at {offset} comes before the previous page's data ends")
        (n,) = struct.unpack("<H", data[offset: offset + 2])
        end = offset + 2 + 12 * n + 4
        if end > len(data):
            problems.append(f"page {len(pages) + 1}: IFD runs past the end of the file")
            break
        tags: dict[int, list[float]] = {}
        order = []
        for i in range(n):
            tag, typ, count = struct.unpack("<HHI", data[offset + 2 + 12 * i: offset + 10 + 12 * i])
            field = data[offset + 10 + 12 * i: offset + 14 + 12 * i]
            order.append(tag)
            try:
                tags[tag] = _values(data, typ, count, field)
            except (ValueError, struct.error):
                problems.append(f"page {len(pages) + 1}: tag {tag} value unreadable")
        if order != sorted(order):
            problems.append(f"page {len(pages) + 1}: tags not in ascending order")
        problems += _check_page(len(pages) + 1, tags, offset, data)
        offsets, counts = tags.get(273, []), tags.get(279, [])
        if offsets and counts:
            last_end = max(last_end, int(offsets[-1] + counts[-1]))
        pages.append(tags)
        (offset,) = struct.unpack("<I", data[end - 4: end])
    if not pages:
        problems.append("no pages")
    for i, tags in enumerate(pages):
        pn = tags.get(297)
        if pn and pn != [i, len(pages)]:
            problems.append(f"page {i + 1}: PageNumber {pn}, expected {[i, len(pages)]}")
    return problems


def _check_page(no: int, tags: dict[int, list[float]], ifd_at: int, data: bytes) -> list[str]:
    p = [f"page {no}: tag {t} not allowed in Profile S" for t in sorted(set(tags) - ALLOWED)]
    p += [f"page {no}: required tag {t} missing" for t in sorted(REQUIRED - set(tags))]

    def want(tag: int, ok: set[float], name: str) -> None:
        if tag in tags and (len(tags[tag]) != 1 or tags[tag][0] not in ok):
            p.append(f"page {no}: {name} is {tags[tag]}, Profile S needs one of {sorted(ok)}")

    want(254, {2}, "NewSubfileType")
    want(256, {1728}, "ImageWidth")
    want(258, {1}, "BitsPerSample")
    want(259, {3}, "Compression")
    want(262, {0}, "PhotometricInterpretation")
    want(266, {2}, "FillOrder")
    want(277, {1}, "SamplesPerPixel")
    want(282, {204, 200}, "XResolution")
    want(283, {98, 196, 100, 200}, "YResolution")
    want(292, {0, 4}, "T4Options")
    want(296, {2}, "ResolutionUnit")
    offs, counts = tags.get(273, []), tags.get(279, [])
    if len(offs) != 1 or len(counts) != 1:
        p.append(f"page {no}: {len(offs)} strips, Profile S needs exactly one")
    elif offs[0] < ifd_at:
        p.append(f"page {no}: image data at {int(offs[0])} comes before its IFD at {ifd_at}")
    elif offs[0] + counts[0] > len(data):
        p.append(f"page {no}: strip runs past the end of the file")
    if 257 in tags and 278 in tags and tags[278][0] < tags[257][0]:
        p.append(f"page {no}: RowsPerStrip {tags[278][0]} < ImageLength {tags[257][0]}: not one strip")
    return p

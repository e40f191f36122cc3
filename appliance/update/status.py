"""status.json: where an update is and how the last one ended, in words for the owner.

One writer: root (the update service and boot-health).  Readers: the web UI (service user) and
`faxbridge update`.  The file lives on the data partition, so what a trial boot decided is still
there when the old slot boots again.  Parsing is forgiving (a missing or damaged file reads as
"no update yet"); writing is whole-file atomic.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

#: phase -> is an update still under way in it
PHASES = {
    "idle": False,  # no update yet
    "checking": True,  # the request was taken; the file is being checked and copied
    "installing": True,  # rauc install is writing the other slot
    "rebooting": True,  # installed; the box restarts into the new system to try it
    "trial": True,  # the new system runs and is checking itself
    "committed": False,  # the new system is healthy and now starts every boot
    "rolled_back": False,  # the new system failed; the box went back to the old one
    "failed": False,  # nothing was changed (bad file, bad signature, refused ...)
}
MAX_STATUS = 64 * 1024
_RAUC_PROGRESS = re.compile(r"^\s*(?P<percent>\d{1,3})%\s+(?P<message>.*\S)\s*$")


@dataclass
class Status:
    phase: str = "idle"
    #: 0-100 while installing, else None
    percent: int | None = None
    #: what is happening, one sentence
    message: str = ""
    #: why it failed or was rolled back, plain words; "" otherwise
    error: str = ""
    #: the bundle's version (rauc info), "" until known
    version: str = ""
    #: the version that was running when the update started
    from_version: str = ""
    #: the slot the update was written to
    target_slot: str = ""
    #: seconds since the epoch: the request was taken, and this record written
    started: float = 0.0
    updated: float = 0.0

    @property
    def busy(self) -> bool:
        return PHASES.get(self.phase, False)

    def result(self) -> str:
        """The last update's outcome in one sentence; "" while none ended."""
        v = f"version {self.version}" if self.version else "the new version"
        if self.phase == "committed":
            return f"Updated to {v}."
        if self.phase == "rolled_back":
            return f"The update to {v} was rolled back: {self.error or 'the new system did not report healthy'}."
        if self.phase == "failed":
            return f"The update could not be installed: {self.error or 'unknown error'}. Nothing was changed."
        return ""

    def to_json(self) -> str:
        d = asdict(self)
        d["busy"] = self.busy
        d["result"] = self.result()
        return json.dumps(d, indent=1) + "\n"


def parse(text: str | bytes | None) -> Status:
    """A Status from status.json's text; fields of the wrong type or an unreadable file are
    dropped (the page then says less, never breaks)."""
    if not text or len(text) > MAX_STATUS:
        return Status()
    try:
        raw = json.loads(text)
    except ValueError:
        return Status()
    if not isinstance(raw, dict):
        return Status()
    out = Status()
    for f in fields(Status):
        value = raw.get(f.name)
        if f.name == "percent":
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
                out.percent = value
        elif f.name in ("started", "updated"):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                setattr(out, f.name, float(value))
        elif isinstance(value, str):
            setattr(out, f.name, value[:2000])
    if out.phase not in PHASES:
        out.phase = "idle"
    return out


def rauc_progress(line: str) -> tuple[int, str] | None:
    """``rauc install``'s progress line (``" 40% Copying image to rootfs.1"``) as (40, text)."""
    m = _RAUC_PROGRESS.match(line)
    if not m or int(m["percent"]) > 100:
        return None
    return int(m["percent"]), m["message"]


#: words of RAUC's errors -> what the owner is told
_PLAIN = [
    (
        ("signature", "cms", "verif", "certificate", "keyring", "x509"),
        "the update file's signature is not valid for this box (it was not made by the maker of this "
        "firmware, or it was damaged)",
    ),
    (("compatible",), "the update is for a different kind of device"),
    (("no space", "enospc"), "the box ran out of space while installing"),
    (("squashfs", "bundle", "magic", "not a valid", "invalid"), "the file is not a valid update bundle"),
]


def plain_error(text: str) -> str:
    """RAUC's last error in the owner's words, with RAUC's own text after it for support."""
    detail = " ".join(text.split())[:500]
    low = detail.lower()
    for words, said in _PLAIN:
        if any(w in low for w in words):
            return f"{said} ({detail})" if detail else said
    return f"installing failed ({detail})" if detail else "installing failed"


def as_dict(s: Status) -> dict[str, Any]:
    d = asdict(s)
    d["busy"], d["result"] = s.busy, s.result()
    return d

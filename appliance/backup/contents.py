"""What a backup holds, as the plaintext inside the sealed file: JSON naming each file.

Only the files listed in ``FILES`` may be in it, each text of bounded size; reading refuses
anything else, so even a file sealed with the right passphrase by someone else cannot make a
restore write anywhere but those places.  Decision 21 says why these and not the others (the
administrator password's hash, the session key, the generated certificate stay per device).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

FORMAT = "faxbridge-backup"
#: name in the backup -> what it is, in the owner's words.  ``tls/*`` live in the web state directory.
FILES: dict[str, str] = {
    "faxbridge.toml": "the configuration (faxbridge.toml)",
    "secrets.toml": "the passwords and client secrets (secrets.toml)",
    "tls/owner-cert.pem": "the web page's certificate you installed",
    "tls/owner-key.pem": "the web page's certificate key you installed",
    "tls/sip-cert.pem": "the SIP TLS certificate you uploaded",
    "tls/sip-key.pem": "the SIP TLS key you uploaded",
}
#: files that only make sense together (a certificate without its key is refused)
PAIRS = (("tls/owner-cert.pem", "tls/owner-key.pem"), ("tls/sip-cert.pem", "tls/sip-key.pem"))
MAX_TEXT = 256 * 1024


class ContentError(ValueError):
    """The plaintext is not a backup this Faxbridge can restore; ``str()`` says why."""


@dataclass
class Contents:
    """The files of one backup (name -> text) and where it came from."""

    files: dict[str, str]
    hostname: str = ""
    created: str = ""
    made_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        problem = _files_problem(self.files)
        if problem:
            raise ValueError(problem)
        return json.dumps(
            {
                "format": FORMAT,
                "files": self.files,
                "hostname": self.hostname,
                "created": self.created,
                "made_by": self.made_by,
            },
            ensure_ascii=False,
            sort_keys=True,
            indent=1,
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, plaintext: bytes) -> Contents:
        try:
            data = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ContentError("its contents are not readable (not the JSON this Faxbridge writes)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ContentError("its contents are not a Faxbridge backup's")
        files = data.get("files")
        if not isinstance(files, dict):
            raise ContentError("its contents list no files")
        problem = _files_problem(files)
        if problem:
            raise ContentError(problem)
        meta = {k: data.get(k, "") for k in ("hostname", "created", "made_by")}
        if not all(isinstance(v, str) and len(v) <= 200 and _utf8(v) for v in meta.values()):
            raise ContentError("its description (host name, date, version) is not text")
        return cls(dict(files), **meta)

    def described(self) -> list[str]:
        """What the backup holds, in words, in FILES's order."""
        return [FILES[name] for name in FILES if name in self.files]


def _files_problem(files: dict[Any, Any]) -> str | None:
    for name, text in files.items():
        if name not in FILES:
            return f"it holds a file this Faxbridge does not restore: {str(name)[:80]!r}"
        if not isinstance(text, str) or len(text) > MAX_TEXT or not _utf8(text):
            return f"{name} in it is not text of at most {MAX_TEXT // 1024} KiB"
    if "faxbridge.toml" not in files:
        return "it holds no configuration (faxbridge.toml)"
    for a, b in PAIRS:
        if (a in files) != (b in files):
            return f"it holds {a if a in files else b} without {b if a in files else a}"
    return None


def _utf8(text: str) -> bool:
    """JSON's "\\ud800" escapes make strings no file can hold (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

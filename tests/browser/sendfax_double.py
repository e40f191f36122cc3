"""A stand-in for the daemon's outbound control commands, until the lead's daemon has them.

It speaks the real control socket protocol (a real ControlServer on a Unix socket, through
tests/control/harness.py's ServerThread) and does real work on real files: it reads the files
the web process staged, renders them with Pillow to 1728-wide bilevel pages, writes the preview
PNGs into the staging directory and a real fax TIFF into ``<spool>/outbound/<uid>.tif``, as the
contract says the daemon does.  A submitted job then moves through its states on the clock
(queued, sending with one page confirmed per ``page_seconds``, sent), so the page's live progress
is watched for real.  The lead swaps in the real daemon at merge.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageSequence

from appliance.fax.pages import FINE, STANDARD, write_fax_tiff
from tests.control.harness import ServerThread

WIDTH = 1728
#: the far end's CSI the double reports: markup, to prove the pages show it as text
HOSTILE_CSI = "<script>alert('tsi')</script>"


class OutboundDouble:
    """outbound-preview / -submit / -list / -get / -cancel over ``spool``'s staging and queue dirs."""

    def __init__(self, spool: Path, *, page_seconds: float = 1.0, csi: str = HOSTILE_CSI) -> None:
        self.spool = spool
        self.page_seconds = page_seconds
        self.csi = csi
        #: while True, submitted jobs stay queued (to test cancelling one)
        self.hold = False
        self.jobs: dict[int, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handlers(self) -> dict[str, Any]:
        return {
            "outbound-preview": self._wrap(self.preview),
            "outbound-submit": self._wrap(self.submit),
            "outbound-list": self._wrap(self.list),
            "outbound-get": self._wrap(self.get),
            "outbound-cancel": self._wrap(self.cancel),
        }

    def serve(self, socket_path: Path) -> ServerThread:
        return ServerThread(socket_path, self.handlers())

    def _wrap(self, fn: Any) -> Any:
        async def handler(req: dict[str, Any]) -> dict[str, Any]:
            with self._lock:
                self.requests.append(req)
                return fn(req)  # type: ignore[no-any-return]

        return handler

    # -- rendering ----------------------------------------------------------------------

    def _normalise(self, number: str) -> str:
        digits = re.sub(r"[^0-9]", "", number)
        if not re.fullmatch(r"[0-9 +()./-]+", number) or not digits:
            raise ValueError(f"{number!r} is not a fax number")
        if digits.startswith(("1900", "900")):
            raise ValueError("premium-rate numbers are not allowed on route pbx")
        return "+" + digits if number.strip().startswith("+") else "+1" + digits[-10:]

    def _pages(self, staging: str, cover: dict[str, str] | None, fine: bool) -> list[Image.Image]:
        where = self.spool / "outbound-staging" / staging
        names = json.loads((where / "names.json").read_text())
        pages: list[Image.Image] = []
        height = 2200 if fine else 1100
        if cover:
            page = Image.new("1", (WIDTH, height), 1)
            draw = ImageDraw.Draw(page)
            for n, key in enumerate(("from", "to", "subject", "note")):
                draw.text((100, 100 + n * 60), f"{key}: {cover.get(key, '')}", fill=0)
            pages.append(page)
        for n in range(1, len(names) + 1):
            try:
                with Image.open(where / str(n)) as im:
                    for frame in ImageSequence.Iterator(im):
                        g = frame.convert("L")
                        scaled = g.resize((WIDTH, max(1, round(g.height * WIDTH / g.width))))
                        pages.append(scaled.convert("1"))
            except OSError:
                raise ValueError(f"{names[n - 1]}: only PDF, TIFF, PNG, JPEG and plain text can be faxed") from None
        return pages

    def preview(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            e164 = self._normalise(str(req["number"]))
            pages = self._pages(str(req["staging"]), req.get("cover"), bool(req.get("fine", True)))
        except ValueError as e:
            return {"ok": False, "error": str(e)}
        out = self.spool / "outbound-staging" / str(req["staging"]) / "preview"
        out.mkdir(exist_ok=True)
        for n, page in enumerate(pages, 1):
            small = page.convert("L").resize((600, round(page.height * 600 / WIDTH)))
            small.save(out / f"page-{n}.png")
        return {"ok": True, "pages": len(pages), "e164": e164, "route": "pbx", "preview": f"{req['staging']}/preview"}

    def submit(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            e164 = self._normalise(str(req["number"]))
            pages = self._pages(str(req["staging"]), req.get("cover"), bool(req.get("fine", True)))
        except ValueError as e:
            return {"ok": False, "error": str(e)}
        uid = secrets.token_hex(8)
        (self.spool / "outbound").mkdir(exist_ok=True)
        write_fax_tiff(pages, self.spool / "outbound" / f"{uid}.tif", FINE if req.get("fine", True) else STANDARD)
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = {
            "id": job_id,
            "uid": uid,
            "number": req["number"],
            "e164": e164,
            "route": "pbx",
            "state": "queued",
            "created": time.time(),
            "attempts": 0,
            "pages": len(pages),
            "pages_confirmed": 0,
            "last_result": "",
            "last_words": "",
            "remote_ident": "",
            "finished": None,
            "source": req.get("source", ""),
            "sender": req.get("sender", ""),
            "hold": self.hold,
            "cancelled": False,
        }
        return {"ok": True, "uid": uid, "id": job_id}

    # -- the job moving on the clock ------------------------------------------------------------

    def _view(self, job: dict[str, Any], full: bool = False) -> dict[str, Any]:
        now = time.time()
        out = {k: v for k, v in job.items() if k not in ("hold", "cancelled")}
        attempts: list[dict[str, Any]] = []
        trace: list[str] = []
        if job["cancelled"]:
            out.update(
                state="cancelled",
                last_words="Cancelled from the web page before it was sent.",
                finished=job["cancelled"],
            )
        elif not job["hold"]:
            elapsed = now - job["created"] - 0.5
            if elapsed >= 0:
                confirmed = min(job["pages"], int(elapsed / self.page_seconds))
                done = confirmed >= job["pages"] and elapsed >= job["pages"] * self.page_seconds + 0.5
                out.update(
                    state="sent" if done else "sending",
                    pages_confirmed=confirmed,
                    attempts=1,
                    remote_ident=self.csi,
                    last_words=(
                        f"Sent: all {job['pages']} pages confirmed by the far end."
                        if done
                        else f"Sending page {min(confirmed + 1, job['pages'])} of {job['pages']}."
                    ),
                    last_result="ok" if done else "",
                )
                if done:
                    out["finished"] = job["created"] + 0.5 + job["pages"] * self.page_seconds + 0.5
                attempts.append(
                    {
                        "started": job["created"] + 0.5,
                        "connected": job["created"] + 1.0,
                        "finished": out["finished"],
                        "result": out["last_result"],
                        "words": out["last_words"],
                        "detail": "",
                        "pages_confirmed": confirmed,
                        "remote_ident": self.csi,
                        "bit_rate": 14400,
                        "duration": (out["finished"] or now) - job["created"] - 0.5,
                        "way": "sip:5551234@127.0.0.1",
                    }
                )
                trace = [
                    f"received CSI {self.csi}",
                    "received DIS: V.17 14400 bit/s, fine, ECM",
                    "sent TSI +1 555 1000",
                    "sent DCS: 14400 bit/s, fine, ECM",
                    "received CFR",
                ]
                trace += [f"sent page {n}; received MCF" for n in range(1, confirmed + 1)]
                if done:
                    trace += ["sent DCN"]
        if full:
            out["attempts"] = attempts
            out["trace"] = trace
        return out

    def list(self, req: dict[str, Any]) -> dict[str, Any]:
        limit = int(req.get("limit", 100))
        jobs = sorted(self.jobs.values(), key=lambda j: -j["id"])[:limit]
        return {"ok": True, "jobs": [self._view(j) for j in jobs]}

    def get(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(req.get("id"))  # type: ignore[arg-type]
        if job is None:
            return {"ok": False, "error": f"there is no outbound fax {req.get('id')}"}
        return {"ok": True, "job": self._view(job, full=True)}

    def cancel(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(req.get("id"))  # type: ignore[arg-type]
        if job is None:
            return {"ok": False, "error": f"there is no outbound fax {req.get('id')}"}
        if self._view(job)["state"] in ("sent", "failed", "cancelled"):
            return {"ok": False, "error": "it is finished already"}
        job["cancelled"] = time.time()
        return {"ok": True, "job": self._view(job)}

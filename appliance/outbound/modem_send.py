"""Sending one fax over a modem line, and what the modem said turned into an :class:`Outcome`.

How the outbound worker uses it::

    outcome = await send_over_modem(app.modems, "any", "5551234", tiff, ident=..., ecm=True,
                                    on_connected=..., on_page=..., cancel=event, timeout=900)

``via`` is what follows ``modem:`` in the route: ``any`` (the first line that can send now), a
line name (``ttyACM0``) or its configured device path.  The line is picked and claimed by
``ModemManager.acquire`` + ``ModemLine.send`` with no await in between, so two workers never share
a line, and a line never dials while a call is in or answers while it sends (modem_line.py).
No usable line is ``NO_ROUTE`` (retryable: the line may be free at the next attempt).

The mapping (:func:`outcome_from`) is pure: ATD's words first (BUSY, NO ANSWER, NO CARRIER, NO
DIALTONE), then how the fax session ended (spandsp's T.30 code on Class 1, the modem's hang-up
code on Class 2/2.0).  ``on_connected`` runs when the far end's fax identified itself (T.30
phase B on Class 1, ATD's OK on Class 2): before it, nothing of the fax can have arrived.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.calls.modem_line import LineBusy
from appliance.modem.class2_codes import hangup_text
from appliance.modem.driver import ModemSendJob, ModemSendResult
from appliance.outbound.outcome import Outcome, Result
from appliance.spandsp.t4 import T4Error, T4Transmitter

if TYPE_CHECKING:
    from appliance.modem.manager import ModemManager

log = logging.getLogger("faxbridge.outbound")

#: spandsp 0.0.6 T30_ERR_* (t30.h) -> result; codes not named here: DROPPED once the fax answered
T30_RESULTS: dict[int, Result] = {
    2: Result.NO_CARRIER,  # T0 expired: no fax answered
    3: Result.NO_CARRIER,  # T1 expired
    19: Result.NO_CARRIER,  # TX_NODIS: something else than a fax answered
    5: Result.DROPPED,  # HDLC carrier did not stop
    6: Result.TRAINING_FAILED,  # CANNOT_TRAIN
    14: Result.TRAINING_FAILED,  # TX_BADDCS
    20: Result.TRAINING_FAILED,  # TX_PHBDEAD: no answer to DCS or TCF
    8: Result.FAR_END_ERROR,  # INCOMPATIBLE
    9: Result.FAR_END_ERROR,  # RX_INCAPABLE
    11: Result.FAR_END_ERROR,  # NORESSUPPORT
    12: Result.FAR_END_ERROR,  # NOSIZESUPPORT
    15: Result.FAR_END_ERROR,  # TX_BADPG: DCN after a page
    16: Result.FAR_END_ERROR,  # TX_ECMPHD
    17: Result.FAR_END_ERROR,  # TX_GOTDCN
    18: Result.FAR_END_ERROR,  # TX_INVALRSP
    48: Result.FAR_END_ERROR,  # RETRYDCN: disconnected after the permitted retries
    21: Result.DROPPED,  # TX_PHDDEAD: no answer after a page
    22: Result.DROPPED,  # TX_T5EXP
    49: Result.DROPPED,  # CALLDROPPED
    **dict.fromkeys(range(41, 48), Result.ERROR),  # our TIFF: FILEERROR ... NOMEM
}

#: the words of ATD's final result
DIAL_RESULTS: dict[str, Result] = {
    "BUSY": Result.BUSY,
    "NO ANSWER": Result.NO_ANSWER,
    "timeout": Result.NO_ANSWER,
    "NO CARRIER": Result.NO_CARRIER,
    "NO DIALTONE": Result.NO_ROUTE,
    "ERROR": Result.NO_ROUTE,
}


def fhs_result(code: str) -> Result:
    """A Class 2/2.0 hang-up code (T.32 keys: "25", "A0") as a result."""
    if code in ("01", "02", "03", "04", "05", "10", "11"):
        return Result.NO_CARRIER if code != "02" else Result.DROPPED
    if code in ("21", "53", "55", "57", "58"):
        return Result.FAR_END_ERROR
    if code[:1] == "2":
        return Result.TRAINING_FAILED
    if code[:1] == "4":
        return Result.ERROR
    return Result.DROPPED


def outcome_from(r: ModemSendResult, *, duration: float = 0.0, way: str = "") -> Outcome:
    """The report's words for what the line and the driver said (pure)."""
    detail = r.reason
    if r.t30_text:
        detail += f"; T.30: {r.t30_text}"
    if r.hangup_code and r.hangup_code != "00":
        detail += f"; +FHS:{r.hangup_code} {hangup_text(r.hangup_code)}"
    if r.cancelled:
        result = Result.CANCELLED
    elif r.complete:
        result = Result.SENT
    elif r.dial_result in DIAL_RESULTS:
        result = DIAL_RESULTS[r.dial_result]
    elif not r.dial_result:  # never dialled: the modem or the document
        result = Result.NO_ROUTE if r.device_lost or "modem" in r.reason else Result.ERROR
    elif r.modem_class in ("2", "2.0") and r.hangup_code:
        result = fhs_result(r.hangup_code)
    elif r.t30_code is not None and r.t30_code in T30_RESULTS:
        result = T30_RESULTS[r.t30_code]
    elif not r.fax_answered:
        result = Result.NO_CARRIER  # answered (or dialled) but no fax machine said anything
    else:
        result = Result.DROPPED
    if result is Result.DROPPED and not r.fax_answered:
        result = Result.NO_CARRIER
    return Outcome(
        result=result,
        detail=detail.strip("; "),
        pages_confirmed=r.pages_sent,
        pages_total=r.pages_total,
        remote_ident=r.remote_ident,
        duration=round(duration, 1),
        bit_rate=r.bit_rate,
        ecm=r.ecm,
        way=way,
        t30_code=r.t30_code,
        trace=list(r.trace)[-400:],
    )


def _pages_in(tiff: Path) -> int:
    with T4Transmitter(tiff) as tx:
        return tx.pages_in_file


async def send_over_modem(
    manager: ModemManager,
    via: str,
    dial: str,
    tiff: Path,
    *,
    ident: str,
    ecm: bool = True,
    on_connected: Callable[[], None],
    on_page: Callable[[int], None],
    cancel: asyncio.Event,
    timeout: float = 900.0,
) -> Outcome:
    """Send ``tiff`` to ``dial`` on the line ``via`` names ("any", a line name or a device path).

    Never raises for the line, the modem or the far end: every end is an Outcome.  Cancelling
    (``cancel`` set, or this task cancelled) hangs up the way the modem's class needs (Class 1:
    T.30 stops, the modem's data phase is aborted, ATH; Class 2/2.0: +FKS, ATH)."""
    t0 = time.monotonic()
    try:
        pages = _pages_in(tiff)
    except (OSError, T4Error) as e:
        return Outcome(Result.ERROR, detail=f"cannot read the fax document: {e}")
    if not any(c.isdigit() for c in dial):
        return Outcome(Result.ERROR, detail=f"nothing to dial in {dial!r}", pages_total=pages)
    if cancel.is_set():
        return Outcome(Result.CANCELLED, detail="cancelled before dialling", pages_total=pages)
    try:
        line = manager.acquire(via)
    except LineBusy as e:
        return Outcome(Result.NO_ROUTE, detail=str(e), pages_total=pages, way=f"modem:{via}")
    way = f"modem {line.name} Class {line.fax_class}"
    job = ModemSendJob(
        dial=dial,
        tiff_path=tiff,
        ident=ident,
        ecm=ecm,
        on_connected=on_connected,
        on_page=on_page,
        cancel=cancel,
        max_call_duration=timeout,
    )
    try:
        result = await line.send(job)
    except LineBusy as e:  # the line went down, or a call came in, before it dialled
        return Outcome(Result.NO_ROUTE, detail=str(e), pages_total=pages, way=way)
    except Exception as e:  # the line's own failure (its driver cannot be loaded)
        log.exception("modem send on %s failed", line.line)
        return Outcome(Result.NO_ROUTE, detail=f"{line.line}: {e}", pages_total=pages, way=way)
    result.pages_total = result.pages_total or pages
    outcome = outcome_from(result, duration=time.monotonic() - t0, way=way)
    log.info(
        "modem send to %s on %s: %s (%s), %d/%d pages",
        "".join(c for c in dial if c.isdigit()),
        line.line,
        outcome.result.value,
        outcome.detail,
        outcome.pages_confirmed,
        outcome.pages_total,
    )
    return outcome

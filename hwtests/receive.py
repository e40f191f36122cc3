"""Receiving on the real modem with the appliance's own line and the real class driver."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from appliance.modem.driver import ModemCallResult
from appliance.calls.modem_line import CallerInfo, LineSettings, ModemLine

from .conftest import Bench


@dataclass
class Received:
    caller: CallerInfo | None = None
    result: ModemCallResult | None = None
    tiff: Path | None = None
    states: list[str] = field(default_factory=list)
    line: ModemLine | None = None


async def receive_one(bench: Bench, tmp_path: Path, start_sender: Callable[[], Awaitable[Any]] | None,
                      timeout: float, *, ecm: bool = True, rings: int = 2) -> Received:
    """Bring the line up on the modem under test, let the sender call, return the one call."""
    got = Received()
    done = asyncio.Event()

    async def begin(caller: CallerInfo) -> tuple[int, Path]:
        got.caller, got.tiff = caller, tmp_path / "received.tif"
        return 1, got.tiff

    async def finish(fax_id: Any, result: ModemCallResult) -> None:
        got.result = result
        done.set()

    settings = LineSettings(rings=rings, speed=bench.speed, flow_control=bench.flow,  # type: ignore[arg-type]
                            ident="+1 555 0199", ecm=ecm, max_call_duration=timeout)
    line = got.line = ModemLine(bench.modem, settings, begin, finish)
    line.start()
    deadline = time.monotonic() + 30
    while line.state != "idle":
        if time.monotonic() > deadline:
            await line.stop()
            raise AssertionError(f"the line did not come up: {line.status()}")
        await asyncio.sleep(0.1)
    print(f"\nline up: {line.status()}")
    sender = asyncio.ensure_future(start_sender()) if start_sender else None
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await line.stop()
        if sender is not None:
            await asyncio.gather(sender, return_exceptions=True)
    return got

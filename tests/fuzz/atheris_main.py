"""Run one fuzz target under atheris: ``python -m tests.fuzz.atheris_main TARGET [libFuzzer flags]``.

The product package is imported inside ``atheris.instrument_imports(include=["appliance"])`` (with
atheris' str hook on, so the mutator learns what ``startswith``/``endswith`` compare against): its
bytecode reports coverage and comparisons to libFuzzer.  Atheris' RegEx hook stays off: its
pattern proxy refuses ``pattern.match(text, pos)``, which json and others call.

``FUZZ_TOLERATE`` (comma-separated ``ExceptionType@file.py:function``) lets a triage run go past
a crash that is already known and owned elsewhere: an exception whose type and innermost frame
match is counted, its first input saved as ``known-<signature>-<sha1>`` beside the other
artifacts, and the run goes on.  Off by default; ``make test`` and ``make fuzz`` never set it.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Callable



def signature(exc: BaseException) -> str:
    """``ValueError@message.py:_check_required``: the exception type and its innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__}@{Path(last.filename).name}:{last.name}"


def tolerant(test: Callable[[bytes], None], tolerate: set[str], prefix: str) -> Callable[[bytes], None]:
    """`test`, except that exceptions whose signature is in `tolerate` are recorded, not raised."""
    seen: set[str] = set()

    def run(data: bytes) -> None:
        try:
            test(data)
        except Exception as e:  # noqa: BLE001 - re-raised unless tolerated
            sig = signature(e)
            if sig not in tolerate:
                raise
            if sig not in seen:
                seen.add(sig)
                print(f"TOLERATED {sig}: {e!r} input={data[:200]!r}", file=sys.stderr, flush=True)
                name = sig.replace("@", "-").replace(":", "-").replace(".py", "")
                Path(f"{prefix}known-{name}-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
    return run


def main(argv: list[str]) -> None:
    import atheris

    if len(argv) < 2:
        sys.exit("usage: python -m tests.fuzz.atheris_main TARGET [libFuzzer flags]")
    name, flags = argv[1], argv[2:]
    from tests.fuzz import targets

    atheris.enabled_hooks.add("str")
    with atheris.instrument_imports(include=["appliance"]):
        module = targets.load(name)
    test: Callable[[bytes], None] = module.TestOneInput
    tolerate = {s.strip() for s in os.environ.get("FUZZ_TOLERATE", "").split(",") if s.strip()}
    if tolerate:
        prefix = next((f.split("=", 1)[1] for f in flags if f.startswith("-artifact_prefix=")), "./")
        test = tolerant(test, tolerate, prefix)
    # libFuzzer re-runs argv[0] through the shell for -merge: make it a whole command line
    command = f"{shlex.quote(sys.executable)} -m tests.fuzz.atheris_main {shlex.quote(name)}"
    atheris.Setup([command] + flags, test)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

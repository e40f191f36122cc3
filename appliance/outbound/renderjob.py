"""Rendering in a child process, so a hostile document cannot harm the daemon.

The checks in render.py bound what can be seen before rendering (sizes, page counts, page
dimensions); a PDF can still hide a content stream that inflates to gigabytes, a font that takes
minutes, or a bug in PDFium. So the daemon never renders: it starts
``python -m appliance.outbound.renderjob`` (a fresh interpreter, not a fork of a process with
threads and real-time threads), which first lowers itself (normal scheduling, nice 10: the
daemon's worker threads are SCHED_RR and a child inherits that), limits its address space
(RLIMIT_AS) and CPU time (RLIMIT_CPU, also the backstop should the daemon die and leave it
running), and only then reads the request and renders. The parent keeps a wall-clock timeout and
kills the child (by its pid) past it. A child killed by a limit becomes a RenderRefused in plain
words, naming the file it was on.

The protocol is one JSON request on stdin, and lines on stdout: ``file <i>`` before each file,
then one ``{"pages": n, "maxrss_kb": k}`` or ``{"refused": "..."}`` or ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image, TiffImagePlugin

import appliance
from appliance.fax.pages import FAX_WIDTH
from appliance.outbound.cover import Cover
from appliance.outbound.render import RenderRefused, safe_name

log = logging.getLogger("faxbridge.outbound")

#: the most the child may print; its answer is a few hundred bytes
_MAX_OUTPUT = 64 * 1024


class RenderFailed(RuntimeError):
    """The renderer failed in a way that is not the document's fault (a bug): our error."""


def render_in_child(
    files: list[Path],
    names: list[str],
    out_tiff: Path,
    *,
    fine: bool,
    cover: Cover | None,
    body_text: str,
    max_pages: int,
    max_bytes: int,
    timeout: float = 60.0,
    memory_mb: int = 512,
) -> int:
    """Render ``files`` (shown to the sender as ``names``) into the fax TIFF ``out_tiff`` in a
    child process with ``memory_mb`` of address space and ``timeout`` seconds; returns the page
    count. RenderRefused for a document that cannot or may not be faxed, including one that hits
    a limit; RenderFailed for our own failure. Blocking: call it from a worker thread."""
    if len(files) != len(names):
        raise ValueError("files and names differ in length")
    body_text = body_text.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates
    total = len(body_text.encode("utf-8"))
    for path, name in zip(files, names, strict=True):
        total += path.stat().st_size
        if total > max_bytes:
            raise RenderRefused(
                f"{safe_name(name)}: the documents are more than {max_bytes / 1e6:g} MB together; at most "
                f"{max_bytes / 1e6:g} MB can be faxed at once"
            )
    request = {
        "files": [str(p) for p in files],
        "names": names,
        "out": str(out_tiff),
        "fine": fine,
        "cover": asdict(cover) if cover is not None else None,
        "body_text": body_text,
        "max_pages": max_pages,
        "max_bytes": max_bytes,
        "memory_mb": memory_mb,
        "cpu_seconds": max(1, math.ceil(timeout)),
    }
    answer, progress = _run(request, timeout)
    if "pages" in answer:
        log.info("rendered %d pages (child peak memory %d KB)", answer["pages"], answer.get("maxrss_kb", 0))
        return int(answer["pages"])
    out_tiff.unlink(missing_ok=True)  # a child killed mid-write leaves part of a TIFF
    if "refused" in answer:
        raise RenderRefused(str(answer["refused"]))
    what = _on(progress, names)
    kind = answer.get("limit")
    if kind == "memory":
        raise RenderRefused(f"{what}needs more than {memory_mb} MB of memory to render")
    if kind == "cpu":
        raise RenderRefused(f"{what}needs more than {math.ceil(timeout)} s of processing to render")
    if kind == "timeout":
        raise RenderRefused(f"{what}took longer than {timeout:g} s to render")
    if kind == "crash":
        raise RenderRefused(f"{what}could not be rendered: the renderer crashed on it ({answer['error']})")
    raise RenderFailed(f"rendering failed: {answer.get('error', 'no answer from the renderer')}")


def _on(progress: int | None, names: list[str]) -> str:
    """The start of a limit's sentence: "report.pdf: the document " (or the cover/text)."""
    if progress is None or progress < 0 or progress >= len(names):
        return "the fax: the cover page or the message text "
    return f"{safe_name(names[progress])}: the document "


def _run(request: dict[str, Any], timeout: float) -> tuple[dict[str, Any], int | None]:
    """Run the child; its answer (or a "limit"/"error" of our own making) and the last file index
    it announced."""
    root = str(Path(appliance.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "appliance.outbound.renderjob"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd="/",
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(json.dumps(request, ensure_ascii=False).encode("utf-8", "replace"), timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        out, err = proc.communicate()
    progress: int | None = None
    answer: dict[str, Any] | None = None
    for line in out[:_MAX_OUTPUT].decode("utf-8", "replace").splitlines():
        if line.startswith("file "):
            try:
                progress = int(line[5:])
            except ValueError:
                pass
        elif line.startswith("{"):
            try:
                answer = json.loads(line)
            except ValueError:
                answer = None
    if answer is not None and ("pages" in answer or "refused" in answer or "limit" in answer):
        return answer, progress
    tail = err[-2000:].decode("utf-8", "replace").strip()
    if tail:
        log.warning("renderer said: %s", tail.splitlines()[-1][:300])
    if timed_out:
        return {"limit": "timeout"}, progress
    status = proc.returncode
    if status == -signal.SIGXCPU:
        return {"limit": "cpu"}, progress
    if status == -signal.SIGKILL:  # not ours (that is the timeout above): the kernel's OOM killer
        return {"limit": "memory"}, progress
    if "MemoryError" in tail or "Out of memory" in tail or "out of memory" in tail:
        return {"limit": "memory"}, progress
    if status is not None and status < 0:
        # PDFium aborts (SIGABRT, SIGTRAP, SIGSEGV) when an allocation fails under RLIMIT_AS
        sig = signal.Signals(-status).name if -status in signal.Signals._value2member_map_ else str(-status)
        if sig in ("SIGABRT", "SIGTRAP", "SIGSEGV", "SIGBUS", "SIGILL"):
            return {"limit": "memory"}, progress
        return {"limit": "crash", "error": sig}, progress
    error = answer.get("error") if answer else None
    return {"error": error or f"exit status {status}: {tail[-300:]}"}, progress


# ---------------------------------------------------------------------------------------------
# the child


def _lower_and_limit(memory_mb: int, cpu_seconds: int) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    try:
        os.nice(10)
    except OSError:
        pass
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 2))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _say(obj: dict[str, Any] | str) -> None:
    sys.stdout.write((json.dumps(obj) if isinstance(obj, dict) else obj) + "\n")
    sys.stdout.flush()


def write_pages(pages: Iterator[Image.Image], path: Path, dpi: tuple[int, int]) -> int:
    """``appliance.fax.pages.write_fax_tiff`` one page at a time (the same G4 TIFF: 1-bit, 1728
    wide, ``dpi``), so only the page being written is in memory: holding 50 decoded pages and
    their 1-bit copies took 390 MB, against the child's 512 MB. Returns the page count."""
    count = 0
    with open(path, "w+b") as fp, TiffImagePlugin.AppendingTiffWriter(fp) as tiff:
        for page in pages:
            count += 1
            if page.width != FAX_WIDTH:
                raise ValueError(f"page {count} is {page.width} px wide; fax pages are {FAX_WIDTH}")
            page.convert("1").save(tiff, "TIFF", compression="group4", dpi=dpi)
            tiff.newFrame()
    if count == 0:
        raise ValueError("a fax needs at least one page")
    return count


def _peak_kb() -> int:
    """This process's peak resident memory since exec (VmHWM: ru_maxrss would carry over the
    parent's from before the fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    """The child: limits first, then the request, then the work."""
    request = json.loads(sys.stdin.buffer.read())  # from our parent, bounded by max_bytes
    _lower_and_limit(int(request["memory_mb"]), int(request["cpu_seconds"]))
    from appliance.outbound.render import fax_dpi, iter_pages

    out = Path(request["out"])
    try:
        files = [(name, Path(path).read_bytes()) for path, name in zip(request["files"], request["names"], strict=True)]
        cover = Cover(**request["cover"]) if request["cover"] is not None else None
        fine = bool(request["fine"])
        pages = iter_pages(
            files,
            fine=fine,
            cover=cover,
            body_text=str(request["body_text"]),
            max_pages=int(request["max_pages"]),
            max_bytes=int(request["max_bytes"]),
            on_file=lambda i: _say(f"file {i}"),
        )
        count = write_pages(pages, out, fax_dpi(fine))
    except RenderRefused as e:
        out.unlink(missing_ok=True)
        _say({"refused": str(e)})
        return 0
    except MemoryError:
        out.unlink(missing_ok=True)
        _say({"limit": "memory"})
        return 0
    except Exception as e:  # noqa: BLE001 - the parent reports it as our failure; the traceback goes to stderr
        out.unlink(missing_ok=True)
        import traceback

        traceback.print_exc()
        _say({"error": f"{type(e).__name__}: {e}"[:300]})
        return 1
    _say({"pages": count, "maxrss_kb": _peak_kb()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

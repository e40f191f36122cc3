"""`make bench`: what a fax call costs, how many real-time calls a core carries, and more.

Everything is measured in one run, side by side, and ends in one table of figures, goals and
ratios (issue 13, part 2; decision 28 says what each figure means):

1. Loops with no sockets and no clock: spandsp's own fax-to-fax loop in C (``fax_loop.c``,
   built here with gcc against libspandsp-dev) and the same loop through our Python binding;
   each the best of a few faxes; the receiving end's CPU per call-minute.
2. Whole stack: the daemon in its own process (SIP, RTP, spandsp, spool, Maildir delivery) with
   its web UI child, pinned to one core, receiving real calls over loopback from senders
   pinned to the other core; its CPU time is read from /proc. First a lone call, then the
   capacity search: N simultaneous calls for growing N until the first failing step (or the
   time budget); a step passes when every fax arrived and no RTP packet of any call was sent
   more than 5 ms late (the daemon records each call's lateness in the spool; a packet never
   sent because the media clock skipped a stall counts as late).
3. Scaling: the same search with the daemon allowed every core (taskset), as a ratio to one.
4. Memory: the daemon and the web UI together when idle (RSS and PSS from /proc), and the
   daemon's RSS growth per call in progress at the largest passing step.
5. Mail latency: a fax in a loopback SMTP server's mailbox (aiosmtpd; the ``smtp`` backend)
   after the caller's BYE, G.711 and T.38 calls one at a time.
6. A Raspberry Pi estimate from these figures (``pi_estimate.py`` names the assumption).

Before them, one call's playout buffer under a flood of tiny packets (the cost of a tick).

Prints numbers and ratios; asserts nothing (speed is reported, not tested).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.sender import send_fax
from appliance.fax.testpages import demo_pages
from appliance.media.rtp import PT_PCMU, PlayoutBuffer, RtpPacket
from appliance.spandsp.audio import AudioFaxTerminal
from tests.bench import c_baseline, mail_latency, pi_estimate, procmem
from tests.bench.procmem import PeakSampler
from tests.conftest import free_port

CLK = os.sysconf("SC_CLK_TCK")


def bare_spandsp(tiff: Path, tmp: Path) -> tuple[float, float, float]:
    """(CPU s of both ends, CPU s of the receiving end, simulated call s) through the bare spandsp loop."""
    tx = AudioFaxTerminal(calling=True, tx_file=tiff, trace=False)
    rx = AudioFaxTerminal(calling=False, rx_file=tmp / "bare.tif", trace=False)
    blocks = 0
    rx_cpu = 0.0
    clock = time.thread_time
    t0 = clock()
    while (tx.finished is None or rx.finished is None) and blocks < 50 * 600:
        a = tx.transmit_g711(160)
        r0 = clock()
        b = rx.transmit_g711(160)
        rx.receive_g711(a)
        rx_cpu += clock() - r0
        tx.receive_g711(b)
        blocks += 1
    cpu = clock() - t0
    assert rx.finished is not None and rx.finished.ok, rx.finished
    tx.close(), rx.close()
    return cpu, rx_cpu, blocks * 0.02


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def start_daemon(tmp: Path, cores: str, *, delivery: str = 'backend = "maildir"\nurl = "Maildir"',
                 web: bool = False) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The daemon (and, with ``web``, its web UI child) on the CPUs ``cores`` (taskset's list),
    in its own state directory under ``tmp``; returns once it listens (and the web UI answers)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    web_port = free_port("tcp")
    cfg = tmp / "bench.toml"
    cfg.write_text(f"""
[sip]
listen = ["udp:127.0.0.1:{port}"]
rtp_ports = [30000, 31999]
max_calls = 1000  # the capacity is what is measured here, not the shipped cap (24)
[spool]
dir = "spool"
[delivery]
{delivery}
[web]
enabled = {"true" if web else "false"}
listen = "127.0.0.1:{web_port}"
""")
    log = open(tmp / "daemon.log", "wb")
    proc = subprocess.Popen(["taskset", "-c", cores, sys.executable, "-m", "appliance", "run", "--config", str(cfg),
                             "--state-dir", str(tmp)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if b"Faxbridge is running" in (tmp / "daemon.log").read_bytes() and (not web or _answers(web_port)):
            return proc, port, tmp / "spool" / "spool.db"
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError((tmp / "daemon.log").read_text())


def _answers(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


#: the senders' real-time priority: below the daemon's default (10), above ordinary work
SENDER_PRIORITY = 5


def senders_real_time() -> str:
    """Run this process (the senders, and every thread it starts later) SCHED_RR below the daemon.

    The senders play the gateway, which has its own CPU and keeps real time; on a shared machine
    ordinary work would starve them, their packets would reach the daemon late and faxes would
    fail for a reason that is not the daemon's. Below the daemon's priority they never delay it,
    also when they share its cores (the scaling search)."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(SENDER_PRIORITY))
    except (OSError, AttributeError) as e:
        return f"ordinary scheduling (SCHED_RR not permitted: {e}); others' work can make them late"
    return f"SCHED_RR priority {SENDER_PRIORITY}, below the daemon's"


def loop_scheduling(state: Path) -> str:
    """The daemon's own words on its event loop's scheduling (SCHED_RR or why not)."""
    for line in (state / "daemon.log").read_text(errors="replace").splitlines():
        if "event loop:" in line:
            return line.split("event loop:", 1)[1].strip()
    return "(no word on the event loop's scheduling in its log)"


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def calls(port: int, tiff: Path, n: int, timeout: float = 120) -> list:
    return await asyncio.gather(*(send_fax(f"sip:{5551000 + i}@127.0.0.1:{port}", tiff, timeout=timeout)
                                  for i in range(n)))


def late_when(db: Path, since_id: int) -> str:
    """Where in the calls their late ticks fell (seconds into the call), e.g. "at 0.0-0.4 s"."""
    con = sqlite3.connect(db)
    at = []
    for (extra,) in con.execute("SELECT extra FROM faxes WHERE id > ?", (since_id,)):
        at += [t for t, _ in json.loads(extra or "{}").get("rtp", {}).get("late_ticks", [])]
    con.close()
    return f", late ticks {min(at):.1f}-{max(at):.1f} s into the calls" if at else ""


def lateness(db: Path, since_id: int) -> tuple[float, int, int, int]:
    """(worst lateness ms, packets > 5 ms late or never sent, of them never sent, calls) of the
    calls recorded after ``since_id``: a stall the media clock skipped counts as late."""
    con = sqlite3.connect(db)
    worst, late, unsent, n = 0.0, 0, 0, 0
    for (extra,) in con.execute("SELECT extra FROM faxes WHERE id > ?", (since_id,)):
        rtp = json.loads(extra or "{}").get("rtp", {})
        worst = max(worst, rtp.get("max_late_ms", 0.0))
        if os.environ.get("BENCH_DEBUG") and rtp.get("late_ticks"):
            print("      late ticks (s into call, ms):", rtp["late_ticks"])
        late += rtp.get("late_5ms", 0)
        unsent += rtp.get("not_sent", 0)
        n += 1
    con.close()
    return worst, late, unsent, n


def playout_flood(packets: int = 8000) -> tuple[int, int, float, float]:
    """(held, dropped, mean ms, worst ms) per 20 ms pull of one call's playout buffer after
    ``packets`` one-byte RTP packets, one every other sample, land in its 2 s window (issue 10,
    finding 8: an unbounded scan per gap took 26 ms a tick here)."""
    buf = PlayoutBuffer(PT_PCMU, delay=0.06)
    buf.put(RtpPacket(PT_PCMU, 0, 0, 1, b"\xff"), 0.0)
    for i in range(1, packets):
        buf.put(RtpPacket(PT_PCMU, i, 2 * i, 1, b"\x55"), 0.001)
    held = buf.held
    costs = []
    for tick in range(1, 101):
        t0 = time.perf_counter()
        buf.pull(0.06 + tick * 0.02)
        costs.append(time.perf_counter() - t0)
    return held, buf.stats["overflow"], sum(costs) / len(costs) * 1000, max(costs) * 1000


def capture_cost(seconds: int = 60) -> tuple[float, float, int]:
    """(µs a datagram with capture on, µs with it off, pcap bytes) for one G.711 call's media:
    ``seconds`` of 20 ms packets each way through the channel's capture hook, as
    datagram_received and _send call it (capture is a per-peer setting, off by default)."""
    from appliance.media.capture import MediaCapture

    packet = RtpPacket(PT_PCMU, 0, 0, 1, b"\xff" * 160).build()
    peer = ("192.0.2.10", 5004)
    n = seconds * 50

    def run(capture: MediaCapture | None) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            if capture is not None:  # the hook's whole cost when off: this test
                capture.received(packet, peer, time.time())
            if capture is not None:
                capture.sent(packet, peer, time.time())
        return (time.perf_counter() - t0) / (2 * n) * 1e6

    cap = MediaCapture(("127.0.0.1", 40000))
    on = min(run(MediaCapture(("127.0.0.1", 40000))) for _ in range(3))
    run(cap)
    off = min(run(None) for _ in range(3))
    return on, off, cap.size


def max_id(db: Path) -> int:
    con = sqlite3.connect(db)
    (m,) = con.execute("SELECT COALESCE(MAX(id), 0) FROM faxes").fetchone()
    con.close()
    return m


@dataclass
class Step:
    """One capacity step: ``n`` simultaneous calls."""

    n: int
    ok: int
    worst_ms: float
    late: int
    unsent: int
    util: float  # the daemon's CPU over the step's wall time (1.0 = one core)
    sender_util: float  # this process's (the senders') CPU over the step's wall time
    cpu_per_min: float  # daemon CPU s per call-minute
    peak_rss: int  # the daemon's highest RSS during the step, bytes
    wall: float
    when: str = ""  # where in the calls the late ticks fell

    @property
    def passed(self) -> bool:
        return self.late == 0 and self.ok == self.n


def capacity_step(proc: subprocess.Popen[bytes], port: int, db: Path, tiff: Path, n: int) -> Step:
    first = max_id(db)
    c0, s0 = proc_cpu(proc.pid), os.times()
    t0 = time.monotonic()
    with PeakSampler(proc.pid) as mem:
        results = asyncio.run(calls(port, tiff, n))
        time.sleep(2)
    wall = time.monotonic() - t0
    s1 = os.times()
    worst, late, unsent, _ = lateness(db, first)
    cpu_used = proc_cpu(proc.pid) - c0
    call_minutes = sum(r.duration for r in results) / 60 or 1
    return Step(n, sum(r.ok for r in results), worst, late, unsent, cpu_used / wall,
                (s1.user + s1.system - s0.user - s0.system) / wall, cpu_used / call_minutes, mem.peak, wall,
                late_when(db, first))


def search(proc: subprocess.Popen[bytes], port: int, db: Path, tiff: Path, sizes: list[int], bare_per_min: float,
           idle_rss: int, budget: float) -> list[Step]:
    """Steps of growing size until the first failing one (or the time budget is spent)."""
    steps: list[Step] = []
    deadline = time.monotonic() + budget
    for n in sizes:
        if time.monotonic() > deadline:
            print(f"    (time budget of {budget:.0f} s spent: no larger step)")
            break
        others = foreign_realtime(proc.pid)
        if others:
            print(f"    (other real-time processes on the machine: {', '.join(others)}: they delay the daemon's loop)")
        st = capacity_step(proc, port, db, tiff, n)
        if not st.passed:  # once more before believing it: others' work on a shared machine makes packets late
            report_step(st, idle_rss, bare_per_min, "FAIL, once more")
            st = capacity_step(proc, port, db, tiff, n)
        steps.append(st)
        report_step(st, idle_rss, bare_per_min, "pass" if st.passed else "FAIL")
        if not st.passed:
            break
    return steps


def report_step(st: Step, idle_rss: int, bare_per_min: float, verdict: str) -> None:
    n = st.n
    print(f"  {n:3d} calls: {st.ok}/{n} faxes OK, worst packet {st.worst_ms:.2f} ms late, "
          f"{st.late} packets > 5 ms late ({st.unsent} never sent), daemon {st.util * 100:.0f}% of a core, "
          f"senders {st.sender_util * 100:.0f}%, {st.cpu_per_min:.3f} CPU s per call-minute "
          f"({st.cpu_per_min / bare_per_min:.1f}x bare), RSS +{(st.peak_rss - idle_rss) / 1e6:.0f} MB "
          f"({(st.peak_rss - idle_rss) / n / 1e6:.2f} MB/call), {st.wall:.0f} s{st.when}: {verdict}")


def foreign_realtime(daemon: int) -> list[str]:
    """User processes other than ``daemon`` and its children running SCHED_RR/FIFO ("pid name")."""
    ours = {daemon, *procmem.children(daemon), os.getpid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ours:
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        if int(fields[6]) & 0x00200000:  # PF_KTHREAD: the kernel's own threads
            continue
        if int(fields[38]) in (os.SCHED_RR, os.SCHED_FIFO):
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = head.split("(", 1)[1]
            found.append(f"{entry.name} {cmd[:90]}")
    return found


def best(steps: list[Step]) -> Step | None:
    passed = [s for s in steps if s.passed]
    return passed[-1] if passed else None


def lone_call(proc: subprocess.Popen[bytes], port: int, tiff: Path) -> tuple[float, float, float, str]:
    """(daemon CPU s per call-minute, call s, idle CPU s per minute, status) for one call alone."""
    idle0, t_idle = proc_cpu(proc.pid), time.monotonic()
    time.sleep(3.0)
    idle_rate = (proc_cpu(proc.pid) - idle0) / (time.monotonic() - t_idle)
    asyncio.run(calls(port, tiff, 1))  # warm-up: first-use imports (email, smtplib...) not counted
    time.sleep(1.5)
    c0, t0 = proc_cpu(proc.pid), time.monotonic()
    (res,) = asyncio.run(calls(port, tiff, 1))
    time.sleep(1.5)  # spool commit and delivery
    wall = time.monotonic() - t0
    cpu_stack = proc_cpu(proc.pid) - c0 - idle_rate * wall
    return cpu_stack / (res.duration / 60), res.duration, idle_rate * 60, res.status


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def main() -> None:
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="16,32,64,96,128,160,192,256,320",
                    help="numbers of simultaneous calls to try, in order; the search stops at the first failure")
    ap.add_argument("--loops", type=int, default=5, help="faxes through each bare loop (C and binding); the best counts")
    ap.add_argument("--mail-calls", type=int, default=3, help="G.711 calls, and as many T.38 calls, for mail latency")
    ap.add_argument("--budget", type=float, default=240, help="seconds after which a capacity search starts no new step")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    ncpu = os.cpu_count() or 1
    all_cores = set(range(ncpu))
    os.sched_setaffinity(0, {1 % ncpu})  # senders on the other core than the daemon
    senders_rt = senders_real_time()
    table: list[tuple[str, str, str, str]] = []  # figure, measured, goal, ratio
    load_at_start = os.getloadavg()

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tiff = tmp / "page.tif"
        write_fax_tiff(demo_pages(1, STANDARD), tiff, STANDARD)

        held, dropped, mean_ms, worst_ms = playout_flood()
        print(f"playout flood:      8000 one-byte RTP packets in the window: {held} held, {dropped} dropped; "
              f"a 20 ms tick's pull {mean_ms:.3f} ms on average, {worst_ms:.3f} ms at worst")

        on_us, off_us, size = capture_cost()
        print(f"media capture:      {on_us:.2f} µs a datagram with a peer's capture on, {off_us:.3f} µs off; "
              f"a 60 s G.711 call's pcap is {size / 1e6:.1f} MB ({on_us * 100 / 1e4:.3f} % of a core per call)")

        # 1. the loops: C, then the binding, each the best of --loops faxes on this (the senders') core
        c_per_min: float | None = None
        try:
            exe = c_baseline.build(tmp)
            runs = c_baseline.run(exe, tiff, tmp / "c.tif", args.loops)
            good = [r for r in runs if r.ok]
            if good:
                c_best = min(good, key=lambda r: r.rx_cpu)
                c_per_min = c_best.rx_per_minute
                print(f"C spandsp loop:     {c_best.simulated:.1f} s call in {c_best.both_cpu:.4f} s CPU for both ends "
                      f"({c_best.simulated / c_best.both_cpu:.0f}x real time); receiving end {c_best.rx_cpu:.4f} s = "
                      f"{c_per_min:.4f} CPU s per call-minute (best of {len(good)}; median "
                      f"{median([r.rx_per_minute for r in good]):.4f})")
            else:
                print(f"C spandsp loop:     no fax got through in {len(runs)} runs")
        except (OSError, subprocess.SubprocessError) as e:
            print(f"C spandsp loop:     not built or failed: {getattr(e, 'stderr', '') or e}")

        bare = [bare_spandsp(tiff, tmp) for _ in range(args.loops)]
        cpu, rx_cpu, sim = min(bare, key=lambda b: b[1])
        bare_per_min = rx_cpu / (sim / 60)
        print(f"bare spandsp loop:  {sim:.1f} s call in {cpu:.3f} s CPU for both ends ({sim / cpu:.0f}x real time); "
              f"receiving end {rx_cpu:.4f} s = {bare_per_min:.4f} CPU s per call-minute (best of {len(bare)}; "
              f"median {median([b[1] / (b[2] / 60) for b in bare]):.4f}) through the Python binding")
        if c_per_min:
            table.append(("C baseline: spandsp fax loop in C, receiving end", f"{c_per_min:.4f} CPU s/call-min", "", ""))
        table.append(("bare loop through the binding, receiving end", f"{bare_per_min:.4f} CPU s/call-min", "",
                      f"binding/C {bare_per_min / c_per_min:.2f}x" if c_per_min else "binding/C n/a"))

        # 2. the whole stack on one core: memory idle, a lone call, capacity (web UI on as on the box)
        proc, port, db = start_daemon(tmp / "one", "0", web=True)
        try:
            time.sleep(2.0)
            print("daemon:            ", loop_scheduling(tmp / "one"))
            print("senders:           ", senders_rt)
            idle = procmem.of_tree(proc.pid)
            pss = f", PSS {idle.pss / 1e6:.0f} MB" if idle.pss is not None else " (no PSS: smaps_rollup missing)"
            print(f"memory idle:        daemon + web UI {idle.rss / 1e6:.0f} MB RSS{pss} "
                  f"(daemon alone {procmem.rss(proc.pid) / 1e6:.0f} MB RSS)")
            lone_per_min, lone_dur, idle_cpu, lone_status = lone_call(proc, port, tiff)
            print(f"whole stack:        {lone_dur:.1f} s call, {lone_per_min:.3f} CPU s per call-minute ({lone_status}); "
                  f"{lone_per_min / bare_per_min:.1f}x the bare loop; idle daemon {idle_cpu:.3f} CPU s per minute")
            idle_daemon_rss = procmem.rss(proc.pid)  # after the warm-up call: the baseline of per-call growth
            print(f"capacity, daemon on core 0, senders on core {1 % ncpu} (pass = every fax OK and no RTP packet "
                  f"sent > 5 ms late):")
            one = search(proc, port, db, tiff, sizes, bare_per_min, idle_daemon_rss, args.budget)
        finally:
            stop(proc)
        b1 = best(one)
        per_core = b1.n if b1 else 0
        plus = "+" if b1 is not None and b1 is one[-1] and b1.n == sizes[-1] else ""
        memo = f"; the first failing step: {one[-1].n}" if one and not one[-1].passed else ""
        print(f"simultaneous real-time calls on one core: {per_core}{plus}{memo}")
        table.append(("whole stack, a lone call", f"{lone_per_min:.3f} CPU s/call-min", "<= 5x bare",
                      f"stack/bare {lone_per_min / bare_per_min:.1f}x"))
        loaded = b1 or (max(one, key=lambda st: st.n) if one else None)  # a failed step still tells the cost
        if loaded is not None:
            table.append((f"whole stack at load ({loaded.n} calls, one core{'' if loaded.passed else ', failed'})",
                          f"{loaded.cpu_per_min:.3f} CPU s/call-min", "<= 2x bare",
                          f"stack/bare {loaded.cpu_per_min / bare_per_min:.1f}x"
                          + (f", stack/C {loaded.cpu_per_min / c_per_min:.0f}x" if c_per_min else "")))
        table.append(("capacity per core (no packet > 5 ms late)", f"{per_core}{plus} calls", ">= 300",
                      f"{per_core / 300:.2f}x goal" + (f" ({one[-1].n} failed)" if memo else "")))

        # 3. scaling: the same search with the daemon allowed every core (the senders share them)
        n_cores = ncpu
        many: list[Step] = []
        if n_cores > 1:
            os.sched_setaffinity(0, all_cores)
            start = [s for s in sizes if s >= per_core // 2] or sizes
            proc, port, db = start_daemon(tmp / "many", f"0-{n_cores - 1}")
            try:
                asyncio.run(calls(port, tiff, 1))  # warm-up
                print(f"capacity, daemon on cores 0-{n_cores - 1}, senders on the same cores "
                      f"(starting at {start[0]}):")
                many = search(proc, port, db, tiff, start, bare_per_min, procmem.rss(proc.pid), args.budget)
                if many and not many[0].passed:  # the first step already failed: look below it once
                    lower = [s for s in sizes if s < start[0]][-2:] or sorted({max(1, start[0] // 4),
                                                                             max(1, start[0] // 2)})
                    if lower:
                        print("  (the first step failed: the steps below it)")
                        many = search(proc, port, db, tiff, lower, bare_per_min, procmem.rss(proc.pid),
                                      args.budget) + many
            finally:
                stop(proc)
            os.sched_setaffinity(0, {1 % ncpu})
        bn = best(many)
        scaling = (bn.n / per_core) if (bn is not None and per_core) else (1.0 if n_cores == 1 else 0.0)
        goal = 0.9 * n_cores
        print(f"simultaneous real-time calls on {n_cores} cores: {bn.n if bn else 0}; {scaling:.2f}x one core "
              f"(goal {goal:.1f}x)")
        table.append((f"capacity on {n_cores} cores vs one", f"{bn.n if bn else 0} calls", f">= {goal:.1f}x one core",
                      f"scaling {scaling:.2f}x = {scaling / goal:.2f} of goal"))

        # 4. memory
        table.append(("memory idle: daemon + web UI" + (" (PSS)" if idle.pss is not None else " (RSS)"),
                      f"{(idle.pss or idle.rss) / 1e6:.0f} MB (RSS {idle.rss / 1e6:.0f} MB)", "<= 120 MB",
                      f"{(idle.pss or idle.rss) / 120e6:.2f}x goal"))
        per_call = 0.0
        if loaded is not None:  # memory held by calls in progress does not depend on their lateness
            per_call = (loaded.peak_rss - idle_daemon_rss) / loaded.n
            table.append((f"memory per call (RSS growth at {loaded.n} calls / {loaded.n})", f"{per_call / 1e6:.2f} MB",
                          "<= 1 MB", f"{per_call / 1e6:.2f}x goal"))

        # 5. mail latency: the smtp backend to aiosmtpd on loopback, one call at a time
        smtp_port = free_port("tcp")
        controller, box = mail_latency.start_server(smtp_port)
        try:
            proc, port, _ = start_daemon(tmp / "mail", "0", delivery=(
                f'backend = "smtp"\nurl = "smtp://127.0.0.1:{smtp_port}"\nstarttls = "none"\n'
                f'from = "fax@localhost"'))
            try:
                asyncio.run(calls(port, tiff, 1))  # warm-up (first-use imports), its mail not counted
                box.wait_for(1, 10)
                got = mail_latency.measure(port, tiff, box, ["off"] * args.mail_calls + ["reinvite"] * args.mail_calls)
            finally:
                stop(proc)
        finally:
            controller.stop()
        lat = [x for _, x, _ in got if x is not None]
        for mode, x, note in got:
            print(f"mail latency:       {'G.711' if mode == 'off' else 'T.38 '} "
                  + (f"{x * 1000:.1f} ms from the caller's BYE to the message in the mailbox ({note})"
                     if x is not None else note))
        if lat:
            table.append((f"mail latency, BYE to mailbox ({len(lat)} calls, G.711 + T.38)",
                          f"median {median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms", "<= 100 ms",
                          f"{median(lat) / 0.1:.2f}x goal"))

        # 6. a Raspberry Pi estimate
        cpu_at_load = loaded.cpu_per_min if loaded is not None else lone_per_min
        print(f"Raspberry Pi estimate (ASSUMED: a Cortex-A72 core at 1.5 GHz is {pi_estimate.A72_1500_SLOWDOWN:.1f}x "
              f"slower than this core, range {pi_estimate.A72_1500_RANGE[0]}-{pi_estimate.A72_1500_RANGE[1]}x, "
              f"from published single-thread scores; the clock scales it; cores as scaled here):")
        for model in pi_estimate.MODELS:
            lat_calls, cpu_calls = pi_estimate.estimate(model, per_core, cpu_at_load, n_cores, scaling)
            lo = pi_estimate.estimate(model, per_core, cpu_at_load, n_cores, scaling, pi_estimate.A72_1500_RANGE[1])[0]
            hi = pi_estimate.estimate(model, per_core, cpu_at_load, n_cores, scaling, pi_estimate.A72_1500_RANGE[0])[0]
            cores = pi_estimate.usable_cores(model, n_cores, scaling)
            mem_calls = int((model.ram_mb * 1e6 / 2 - (idle.pss or idle.rss)) / per_call) if per_call > 0 else 0
            print(f"  {model.name}: about {lat_calls} calls ({lo}-{hi}) within 5 ms on {cores:.1f} cores' worth; "
                  f"CPU alone would allow {cpu_calls}; half of {model.ram_mb} MB holds {mem_calls} calls")
            table.append((f"Pi estimate: {model.name}", f"~{lat_calls} calls ({lo}-{hi})", "", "estimate, not measured"))

    width = max(len(r[0]) for r in table)
    mwidth = max(len(r[1]) for r in table)
    gwidth = max(len(r[2]) for r in table)
    print()
    load = os.getloadavg()
    print(f"== make bench, one run ({os.uname().machine}, {ncpu} cores; load average at the start "
          f"{load_at_start[0]:.1f}, at the end {load[0]:.1f}: other work on the machine makes packets late) ==")
    print(f"{'figure':{width}}  {'measured':{mwidth}}  {'goal':{gwidth}}  ratio")
    for name, measured, goal_s, ratio in table:
        print(f"{name:{width}}  {measured:{mwidth}}  {goal_s:{gwidth}}  {ratio}")
    if max(load_at_start[0], load[0]) > ncpu:
        print(f"(the load average was above {ncpu}, the number of cores: other work shared them, so the capacity "
              f"and latency figures are pessimistic; run make bench again on a quiet machine)")


if __name__ == "__main__":
    main()

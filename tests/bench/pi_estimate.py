"""A Raspberry Pi's capacity estimated from this machine's figures, with the assumption named.

Nothing here is measured on a Pi: the per-core capacity measured on this x86 core is divided
by an assumed single-thread speed ratio (a Cortex-A72 core against this core, on integer/DSP
code like spandsp's modems), and multiplied by the cores the daemon can use as measured here
(the scaling ratio). The real figure comes from the Pi bench (hwtests/BENCH.md).
"""

from __future__ import annotations

from dataclasses import dataclass

#: How many times slower one Cortex-A72 core at 1.5 GHz is than one core of the development
#: machine (AMD EPYC Zen 3, 2.45 GHz as a VM reports it), on single-thread integer code. An
#: ASSUMPTION, from published single-thread scores: Geekbench 5 single-core about 250-270 for a
#: Pi 4 at 1.5 GHz against about 1,000-1,200 for a Zen 3 EPYC core, and sysbench cpu (integer)
#: in the same range. spandsp's modems are integer and 16-bit DSP code without NEON/AVX
#: kernels in Debian's build, so a general integer score is the nearest published proxy.
A72_1500_SLOWDOWN = 4.0
#: the low and high ends of that assumption, printed as the estimate's range
A72_1500_RANGE = (3.5, 4.5)


@dataclass
class PiModel:
    name: str
    ghz: float
    cores: int
    ram_mb: int  # the smallest RAM the model is sold with


MODELS = (
    PiModel("Raspberry Pi 4 B before rev 1.4, CM4 (Cortex-A72 1.5 GHz)", 1.5, 4, 1024),
    PiModel("Raspberry Pi 4 B rev 1.4+, Pi 400 (Cortex-A72 1.8 GHz)", 1.8, 4, 1024),
)


def slowdown(model: PiModel, assumed: float = A72_1500_SLOWDOWN) -> float:
    """The assumed ratio at the model's clock (the same core, scaled by clock only)."""
    return assumed * 1.5 / model.ghz


def usable_cores(model: PiModel, cores_here: int, scaling: float) -> float:
    """Cores' worth of capacity the daemon gets out of ``model``: the scaling measured here
    (capacity on ``cores_here`` cores / on one) carried on at the same gain per added core."""
    if cores_here <= 1:
        return 1.0
    per_added = max(0.0, (scaling - 1.0) / (cores_here - 1))
    return 1.0 + per_added * (model.cores - 1)


def estimate(model: PiModel, calls_per_core: int, cpu_per_call_minute: float, cores_here: int,
             scaling: float, assumed: float = A72_1500_SLOWDOWN) -> tuple[int, int]:
    """(calls by the 5 ms latency capacity, calls by CPU alone) on ``model``.

    The latency capacity here is scaled down by the core's speed (a slower core makes every
    tick's work longer by the same factor, so the same lateness comes at fewer calls); the CPU
    figure is 60 s of the usable cores over the stack's CPU per call-minute at load, slowed down.
    """
    s = slowdown(model, assumed)
    cores = usable_cores(model, cores_here, scaling)
    by_latency = int(calls_per_core / s * cores)
    by_cpu = int(60 * cores / (cpu_per_call_minute * s)) if cpu_per_call_minute > 0 else 0
    return by_latency, by_cpu

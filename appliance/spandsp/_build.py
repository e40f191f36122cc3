"""cffi builder for the spandsp 0.0.6 binding (API mode).

API mode compiles a small C module against the installed headers, so the C compiler checks every
declaration in ``spandsp.cdef`` against spandsp.h: a signature that drifts (spandsp 3.0 changed
several) fails the build instead of corrupting memory at run time.  Every 0.0.6-specific
signature lives there; our own C (``g711.c``, ``ecm.c``, ``line.c``, prototypes in ``fbglue.h``)
is compiled into the same module.  They ship in the sdist and the wheel as package data, so the
binding can be rebuilt from either (the image's ``build-binding.sh`` compiles the same files).
"""

from __future__ import annotations

import os
import shlex
import subprocess

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
#: our own C, compiled into the module beside cffi's glue; prototypes in fbglue.h
C_SOURCES = ["g711.c", "ecm.c", "line.c"]


def _read(name: str) -> str:
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def cdef_text() -> str:
    """spandsp's declarations for cffi, then our own prototypes (fbglue.h without its guard)."""
    header = "\n".join(line for line in _read("fbglue.h").splitlines() if not line.startswith("#"))
    return _read("spandsp.cdef") + "\n" + header


def _pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, "spandsp"], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return shlex.split(out.stdout)


def _include_dirs() -> list[str]:
    """spandsp.h is multiarch (/usr/include/<triplet>/spandsp.h); find the triplet, never assume x86_64."""
    dirs = [f[2:] for f in _pkg_config("--cflags-only-I") if f.startswith("-I")]
    try:
        triplet = subprocess.run(
            ["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        triplet = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    if triplet and os.path.isdir(f"/usr/include/{triplet}"):
        dirs.append(f"/usr/include/{triplet}")
    return dirs


ffibuilder = FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "appliance.spandsp._spandsp",
    '#include <spandsp.h>\n#include "fbglue.h"\n',
    # relative: setuptools refuses absolute paths (it runs the build from the project's root)
    sources=[os.path.relpath(os.path.join(HERE, name)) for name in C_SOURCES],
    include_dirs=[HERE, *_include_dirs()],
    libraries=["spandsp", "tiff"],
    extra_compile_args=["-O2", "-Wno-deprecated-declarations"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

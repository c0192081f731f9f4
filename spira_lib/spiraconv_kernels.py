"""Build and load the fused C kernels of SpiraConv v2's CPU path (spiraconv_kernels.c).

Why C: after the GEMMs, a training step of SpiraConv v2 on CPU is a dozen
elementwise passes (Mish, its slope, pooling, dropout) over every activation
of the first block; torch runs each as its own pass over memory. The kernels do
each element once, and the first block's (k x 1) convolution over a single
input channel (8 multiply-adds) inside the same loop, so its output and its
gradient are never stored.

How: ``cc`` compiles the source once per machine into a shared library under
``$SPIRA_KERNEL_CACHE`` (default ``~/.cache/spira/kernels``), named by a hash
of the source, the flags, the compiler and the CPU's flags (``-march=native``
code must not run on another CPU); ctypes loads it. The build goes to a
temporary name and is renamed into place, so concurrent first uses are safe.
No compiler, a failed build or ``SPIRA_NATIVE_KERNELS=0``: ``load()`` returns
None and the torch code runs instead (same function, slower).

Plain Python; no torch import (callers pass ``tensor.data_ptr()``).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("spiraconv_kernels.c")
# Not -ffast-math: gcc then links crtfastmath.o, whose constructor turns on flush-to-zero for the
# whole process when the library loads, changing every torch result after it (a test checks this).
# These four let the loops vectorise (min, rint, the backward sums) without that.
FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=256", "-fno-math-errno", "-fno-trapping-math",
         "-fno-signed-zeros", "-fassociative-math", "-fopenmp", "-fPIC", "-shared", "-std=c99")

_P, _I, _L, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float
SIGNATURES = {
    "spira_first_forward": (_P, _P, _I, _I, _I, _I, _I, _I, _I, _P, _F, _P, _P, _P, _I),
    "spira_first_backward": (_P, _P, _P, _P, _P, _F, _I, _I, _I, _I, _I, _I, _I, _P, _I),
    "spira_tail_forward": (_P, _L, _I, _I, _I, _P, _F, _P, _P, _P, _I),
    "spira_tail_backward": (_P, _P, _P, _P, _F, _L, _I, _I, _I, _P, _I),
    "spira_keep_mask": (_P, _I, _L, _I, _F, _P, _I),
}

_loaded: dict[str, ctypes.CDLL | None] = {}
_off = [0]  # > 0 inside disabled()


def enabled() -> bool:
    if _off[0]:
        return False
    return os.environ.get("SPIRA_NATIVE_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def disabled():
    """The torch code instead of the kernels for what runs inside (benchmarks compare the two)."""
    _off[0] += 1
    try:
        yield
    finally:
        _off[0] -= 1


def cache_dir() -> Path:
    return Path(os.environ.get("SPIRA_KERNEL_CACHE") or Path.home() / ".cache" / "spira" / "kernels")


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return os.uname().machine


def library_path(compiler: str) -> Path:
    """Where the build for this source, compiler, flags and CPU lives."""
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = compiler
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(FLAGS), version, _cpu_flags()]).encode()).hexdigest()
    return cache_dir() / f"spiraconv-{key[:16]}.so"


def build(compiler: str, target: Path) -> None:
    """Compile into ``target`` (atomically); CalledProcessError/OSError on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + "-", suffix=".so.tmp", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], check=True, capture_output=True,
                       text=True, timeout=300)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load() -> ctypes.CDLL | None:
    """The kernels, built on first use; None when they are off or cannot be built here (logged once)."""
    if not enabled():
        return None
    if "lib" in _loaded:
        return _loaded["lib"]
    lib = None
    compiler = _compiler()
    try:
        if compiler is None:
            raise OSError("no C compiler (cc/gcc) on PATH")
        path = library_path(compiler)
        if not path.exists():
            build(compiler, path)
        lib = ctypes.CDLL(str(path))
        for name, args in SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = list(args), ctypes.c_int
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        log.warning("SpiraConv v2 C kernels unavailable (%s%s); using the torch CPU path", exc,
                    f": {detail.strip()[:500]}" if detail else "")
        lib = None
    _loaded["lib"] = lib
    return lib


def reset() -> None:
    """Forget the loaded library (tests switch the kernels on and off)."""
    _loaded.clear()

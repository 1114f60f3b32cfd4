"""The compiled CPU sequence kernel of the GRU, LSTM, BRC, nBRC and MGU (``csrc/gru_cpu.cpp``),
built at first use.

torch has no fused GRU kernel on the CPU, so a GRU trained on long sequences of small batches
(recurrent PPO's minibatches) spends its time dispatching about ten small operations per time
step; the BRC, nBRC and MGU were a Python loop of as many, and oneDNN's LSTM is slower at these
sizes. :func:`load` compiles a kernel that does each step as one matrix product and one vectorised
loop, with ``torch.utils.cpp_extension`` (a C++ compiler is needed; the build takes about a
minute once and is cached under ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``).

Where it cannot be built (no compiler, a failed build) or is switched off with the environment
variable ``RL_WARMUP_GRU_EXT=0``, :func:`load` returns ``None``: :func:`rl_warmup.cells.run_gru`
falls back to its Python backward and :func:`rl_warmup.cells.run_lstm` to oneDNN's LSTM; it warns
once, saying why. ``RL_WARMUP_LSTM_EXT=0`` keeps oneDNN's LSTM only (:func:`lstm_enabled`).

Loading the kernel also calls :func:`keep_freed_memory` (Linux with glibc; ``RL_WARMUP_MALLOC=0``
leaves the allocator alone): a training step allocates and frees megabyte-sized buffers, and with
glibc's default thresholds their pages go back to the system and come back as page faults at the
next call, 10-30 % of the CPU time of a T-Maze training run (``docs/speed_results.md``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

_SOURCE = Path(__file__).parent / "csrc" / "gru_cpu.cpp"
_lock = threading.Lock()
_state: dict[str, ModuleType | None] = {}


def _cpu_tag() -> str:
    """A short tag of this CPU's instruction set, torch's version and the source: the build uses
    ``-march=native``, so a cache shared between different machines (a home directory on a
    cluster) keeps one build per CPU, and one per torch version."""
    flags = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags += line
                    break
    except OSError:
        pass
    import torch  # a build is tied to the torch it was built against

    source = _SOURCE.read_bytes()
    return hashlib.sha1(flags.encode() + torch.__version__.encode() + source).hexdigest()[:10]


def _built(name: str) -> bool:
    """Whether torch's extension cache (``TORCH_EXTENSIONS_DIR`` or its default) already holds the
    build ``name`` (best effort)."""
    try:
        from torch.utils import cpp_extension

        return any(Path(cpp_extension._get_build_directory(name, verbose=False)).glob(f"{name}.*"))
    except Exception:  # a private helper of torch: never let it cost the kernel
        return True


def enabled() -> bool:
    """Whether the environment allows the compiled kernel (``RL_WARMUP_GRU_EXT`` is not ``0``)."""
    return os.environ.get("RL_WARMUP_GRU_EXT", "1") != "0"


def load() -> ModuleType | None:
    """The compiled kernel, building it on the first call; ``None`` where it is unavailable."""
    if "module" in _state:
        return _state["module"]
    with _lock:
        if "module" in _state:
            return _state["module"]
        module = None
        if enabled():
            try:
                from torch.utils import cpp_extension

                if os.name == "nt":  # MSVC
                    flags = ["/O2", "/fp:fast", "/openmp:experimental"]
                else:
                    flags = ["-O3", "-ffast-math", "-fopenmp-simd"]
                    if platform.machine() in ("x86_64", "AMD64"):
                        flags.append("-march=native")
                name = f"rl_warmup_gru_cpu_{_cpu_tag()}"
                if not _built(name):  # not built yet on this machine: say why we pause
                    print("rl_warmup: building the CPU GRU kernel (once, about a minute) ...", file=sys.stderr, flush=True)
                module = cpp_extension.load(name=name, sources=[str(_SOURCE)], extra_cflags=flags, verbose=False)
            except Exception as error:  # no compiler, a failed build: fall back, say why once
                lines = str(error).strip().splitlines() or [""]
                # the compiler's first "error:" line says more than torch's "Error building extension"
                reason = next((line.strip() for line in lines if "error:" in line), lines[-1].strip())
                warnings.warn(
                    f"rl_warmup: the compiled CPU GRU kernel could not be built ({type(error).__name__}: "
                    f"{reason}); GRU, BRC, nBRC and MGU training on the CPU uses the slower Python "
                    "paths, LSTM training oneDNN's kernel. Set RL_WARMUP_GRU_EXT=0 to silence this.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        _state["module"] = module
        if module is not None:
            keep_freed_memory()
        return module


# glibc's mallopt parameters, and the largest values its own adaptive thresholds reach on 64-bit
# systems (DEFAULT_MMAP_THRESHOLD_MAX, and twice that for trimming, as the adaptation pairs them)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Ask glibc to serve allocations up to :data:`MMAP_THRESHOLD` (32 MiB) from its heap and to keep
    up to :data:`TRIM_THRESHOLD` (64 MiB) of freed memory for reuse instead of returning it to the
    system at once (``mallopt``), for the whole process.

    PyTorch's CPU tensors come straight from ``malloc``. Training on long sequences allocates and
    frees buffers of a few megabytes per call (the kernel's gates and states, activations, their
    gradients); glibc's default thresholds start low (128 KiB) and adapt, but its heap is trimmed
    whenever more than twice the last freed buffer is free, so the same pages are returned and
    faulted back in, zeroed, call after call. These values are the ones glibc's adaptation
    reaches at most, set from the start. The cost: up to 64 MiB of freed memory stays with the
    process. Stock sb3-contrib code in the same process runs under the same setting.

    :return: whether the thresholds were set: ``False`` off Linux, without glibc, or with the
        environment variable ``RL_WARMUP_MALLOC=0``.
    """
    if _allocator_left_alone():
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        glibc = hasattr(libc, "gnu_get_libc_version")  # other C libraries' mallopt differs or is absent
    except (OSError, AttributeError):
        return False
    if not glibc:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"
"""glibc's tunable that advises transparent huge pages for the chunks it maps (glibc >= 2.35)."""


def reexec_with_huge_pages() -> None:
    """Start this Python process again with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` unless it
    has it; call it first thing under ``if __name__ == "__main__":`` of a script.

    For long scripts that warm up LSTMs over long settling (``settle_max=1000``, many
    ``perturbations``): each warmup step maps and unmaps hundreds of megabytes of buffers larger
    than glibc's ``mmap`` threshold, and with 4 KiB pages a third of the CPU time went to page
    faults; huge pages fault once per 2 MiB: 28 % less CPU time with the same results and peak
    memory (``scripts/bench_warmup_allocator.py``; ``docs/speed_results.md``, *Warmup's page
    faults*). glibc reads the tunable when the process starts, so a running script can only get it
    by starting again (``os.execv`` with the same interpreter options and arguments).

    Does nothing off Linux, without glibc 2.35 or later, with ``RL_WARMUP_MALLOC=0``, or when
    ``GLIBC_TUNABLES`` is set already (the user's own tunables are kept as they are).
    """
    if not _huge_pages_apply():
        return
    os.environ["GLIBC_TUNABLES"] = HUGETLB_TUNABLE
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _huge_pages_apply() -> bool:
    """Whether :func:`reexec_with_huge_pages` would start the process again."""
    if os.environ.get("GLIBC_TUNABLES") is not None or _allocator_left_alone():
        return False
    library, version = platform.libc_ver()
    numbers = [int(x) for x in version.split(".")[:2] if x.isdigit()]
    return library == "glibc" and len(numbers) == 2 and (numbers[0], numbers[1]) >= (2, 35)


def _allocator_left_alone() -> bool:
    """Off Linux, or opted out with ``RL_WARMUP_MALLOC=0``: the package does not touch glibc's allocator."""
    return os.environ.get("RL_WARMUP_MALLOC", "1") == "0" or not sys.platform.startswith("linux")


def lstm_enabled() -> bool:
    """Whether the environment allows the compiled LSTM (``RL_WARMUP_LSTM_EXT`` is not ``0``):
    ``RL_WARMUP_LSTM_EXT=0`` keeps oneDNN's LSTM in training (as before the kernel had one, so
    runs started then resume bit for bit) while the GRU and the other cells keep the kernel."""
    return os.environ.get("RL_WARMUP_LSTM_EXT", "1") != "0"

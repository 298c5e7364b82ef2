"""What every benchmark shares: timing, peak memory, result rows, workers, synthetic masks.

Timing: :func:`measure` runs a callable ``warmup`` times untimed, then ``repeats`` times timed with
``time.perf_counter``, and keeps every run; the figure is the median. The callable must return
only once its work is done (TensorFlow on a CPU executes eagerly and synchronously; reading one
value back with ``.numpy()`` makes that explicit). A ratio of two timings comes from
:func:`measure_pair`, which alternates the two callables so both see the same machine load.

Memory: on Linux, ``VmHWM`` in ``/proc/self/status`` is the process's peak resident set size,
and writing ``5`` to ``/proc/self/clear_refs`` resets it to the current size, so
:func:`reset_peak_rss` + :func:`peak_rss_mb` give the peak of one stretch of work. Elsewhere the
fallback is ``ru_maxrss`` (the whole process's lifetime peak). Memory-heavy benchmarks run in a
worker subprocess (:func:`run_worker`) so their peak is not that of the whole suite.

This module imports neither TensorFlow nor solo_lib, so ``python -m bench notebooks`` stays light.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The environment of `make test` (Makefile: exported TF variables and NB_ENV). __main__ sets the
# same defaults, so `python -m bench` and `make bench` measure the same thing.
TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1"}
NB_ENV = {"MPLBACKEND": "Agg", "TQDM_DISABLE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0"}

WORKER_TAG = "BENCH_RESULT "  # a worker's last stdout line: this tag, then its JSON


def apply_env_defaults() -> None:
    """Sets :data:`TF_ENV` where the caller has not (call before TensorFlow is imported)."""
    for name, value in TF_ENV.items():
        os.environ.setdefault(name, value)


# ----------------------------------------------------------------------------------------------
# Timing


@dataclasses.dataclass
class Timing:
    """Runs of one timed callable, in seconds."""

    warmup: int
    runs: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def to_dict(self, per: float = 1.0) -> dict:
        """JSON form; ``per`` divides every run (e.g. images per run, for a per-image time)."""
        runs = [r / per for r in self.runs]
        return {"warmup": self.warmup, "repeats": len(runs), "median_s": statistics.median(runs),
                "min_s": min(runs), "max_s": max(runs), "runs_s": runs}


def measure(fn, *, warmup: int, repeats: int) -> Timing:
    """Calls ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed (perf_counter)."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return Timing(warmup, runs)


def measure_pair(fn_a, fn_b, *, warmup: int, repeats: int) -> tuple[Timing, Timing, float]:
    """Times two callables in alternation (a, b, a, b, ...) for a ratio that load changes on a
    shared machine do not skew: each pair runs back to back, so both see the same load.

    Returns:
        ``(timing_a, timing_b, ratio)``, where ``ratio`` is the median over pairs of
        ``a_run / b_run``.
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    runs_a, runs_b = [], []
    for _ in range(max(1, repeats)):
        for fn, runs in ((fn_a, runs_a), (fn_b, runs_b)):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
    ratio = statistics.median(a / b for a, b in zip(runs_a, runs_b))
    return Timing(warmup, runs_a), Timing(warmup, runs_b), ratio


def repeats(quick: bool, full: int, fast: int) -> int:
    """``full`` timed runs normally, ``fast`` under ``--quick``."""
    return fast if quick else full


# ----------------------------------------------------------------------------------------------
# Memory


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    """Resident set size now (``VmRSS``), in MB; None where /proc is missing."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux). Returns False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size in MB: ``VmHWM`` since the last :func:`reset_peak_rss` (Linux), else
    the lifetime ``ru_maxrss`` (kB on Linux, bytes on macOS)."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


# ----------------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass
class Target:
    """A goal on one of a result's metrics: ``metrics[metric] op value`` (op ``<=``, ``<`` or ``>``)."""

    metric: str
    op: str
    value: float
    text: str  # as shown in the table, e.g. "<= 5 ms"

    def met(self, metrics: dict) -> bool | None:
        got = metrics.get(self.metric)
        if got is None:
            return None
        return {"<=": got <= self.value, "<": got < self.value, ">": got > self.value}[self.op]


@dataclasses.dataclass
class Result:
    """One row of the table (and of ``results.json``).

    Attributes:
        benchmark: the benchmark module, e.g. ``"targets"``.
        case: which measurement, e.g. ``"paper preset, 4 instances"``.
        inputs: the input sizes in words.
        figure: the main figure as shown, e.g. ``"3.1 ms/image"``.
        metrics: every number, by name with its unit in the name (``ms_per_image``).
        target: the goal, if the issue sets one.
        timing: the timed runs behind the main figure (see :meth:`Timing.to_dict`).
        details: anything else worth keeping (breakdowns, counts, methods).
        failed: passed to :attr:`met`: a failure (e.g. a notebook that did not pass) is never met.
    """

    benchmark: str
    case: str
    inputs: str
    figure: str
    metrics: dict
    target: Target | None = None
    timing: dict | None = None
    details: dict = dataclasses.field(default_factory=dict)
    failed: bool = False

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return False if self.failed else self.target.met(self.metrics)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["met"] = self.met
        return out


def error_result(benchmark: str, error: BaseException, case: str = "error") -> Result:
    """A row saying a benchmark (or one case of it) could not run; the suite goes on."""
    return Result(benchmark, case, "-", f"error: {type(error).__name__}", {}, failed=True,
                  details={"error": f"{type(error).__name__}: {error}"})


# ----------------------------------------------------------------------------------------------
# Worker subprocesses


class WorkerError(RuntimeError):
    """A worker subprocess failed; the message has the end of its stderr."""


def run_worker(module: str, args: list[str], timeout: float | None = None) -> dict:
    """Runs ``python -m MODULE --worker ARGS...`` from the repository root and returns the JSON
    it printed after :data:`WORKER_TAG`. The worker inherits the environment (TF_* variables)."""
    cmd = [sys.executable, "-m", module, "--worker", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(WORKER_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise WorkerError(f"{' '.join(cmd[2:])} exited with {proc.returncode}:\n{tail}")
    return json.loads(lines[-1][len(WORKER_TAG):])


def worker_reply(data: dict) -> None:
    """Prints a worker's result for :func:`run_worker`."""
    print(WORKER_TAG + json.dumps(data), flush=True)


# ----------------------------------------------------------------------------------------------
# Machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True).stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where unavailable): a loaded machine measures slow."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """Cores, CPU model, library versions, date and git commit of this run."""
    from solo_lib.env import installed_version  # does not import TensorFlow

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "versions": {"python": platform.python_version(),
                     **{name: installed_version(name) for name in ("tensorflow", "keras", "numpy")}},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "env": {name: os.environ.get(name) for name in (*TF_ENV, *NB_ENV)},
        "load_average_at_start": load_average(),
    }


# ----------------------------------------------------------------------------------------------
# Synthetic instances


def random_blobs(count: int, height: int, width: int, rng, *, min_size: float, max_size: float):
    """Seeded random instance masks: rotated ellipses.

    Each ellipse's ``sqrt(w * h)`` is drawn log-uniformly from ``[min_size, max_size]`` pixels,
    its aspect ratio log-uniformly from [1/2, 2], its angle uniformly, its centre uniformly
    inside the image (so it is never empty; large ones may be cut by the border).

    Args:
        count: N.
        height, width: the canvas.
        rng: a ``numpy.random.Generator``.
        min_size, max_size: the range of ``sqrt(w * h)``.

    Returns:
        ``(N, H, W)`` bool.
    """
    import numpy as np

    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    masks = np.zeros((count, height, width), bool)
    for k in range(count):
        size = np.exp(rng.uniform(np.log(min_size), np.log(max_size)))
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        a, b = max(1.5, 0.5 * size * np.sqrt(aspect)), max(1.5, 0.5 * size / np.sqrt(aspect))  # semi-axes
        theta = rng.uniform(0.0, np.pi)
        cy, cx = rng.uniform(0, height - 1), rng.uniform(0, width - 1)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        masks[k] = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return masks

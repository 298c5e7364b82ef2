"""The benchmark suite (bench/) runs and writes well-formed results.

Functional only: no figure is compared with a target here (benchmarks never fail a build on a slow
machine; ``python -m bench`` reports targets met or missed).
"""

import json
import math
import time

import numpy as np

from bench.__main__ import format_table, main
from bench.common import Result, Target, measure, measure_pair, peak_rss_mb, random_blobs


def test_quick_targets_benchmark_writes_results_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    assert main(["targets", "--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())

    machine = data["machine"]
    assert machine["cpu_count"] >= 1 and machine["cpu_model"]
    for name in ("python", "tensorflow", "keras", "numpy"):
        assert machine["versions"][name], name
    for key in ("date", "git_commit", "load_average_at_start", "env"):
        assert key in machine, key
    assert data["quick"] is True and data["selected"] == ["targets"]

    results = data["results"]
    assert [r["case"] for r in results] == ["paper preset, 4 instances", "paper preset, 20 instances"]
    for r in results:
        assert r["benchmark"] == "targets" and r["inputs"] and r["figure"]
        assert r["metrics"] and all(math.isfinite(v) and v > 0 for v in r["metrics"].values())
        assert r["target"]["metric"] in r["metrics"] and r["met"] in (True, False)
        timing = r["timing"]
        assert timing["repeats"] == len(timing["runs_s"]) >= 1
        assert 0 < timing["min_s"] <= timing["median_s"] <= timing["max_s"]
    assert "paper preset, 20 instances" in capsys.readouterr().out  # the printed table


def test_helpers():
    calls = []
    timing = measure(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.runs) == 3 and timing.median >= 0
    assert peak_rss_mb() > 0

    order = []
    slow_a, fast_b, ratio = measure_pair(lambda: (order.append("a"), time.sleep(0.004)),
                                         lambda: (order.append("b"), time.sleep(0.001)), warmup=1, repeats=3)
    assert order == ["a", "b"] * 4  # alternated, the warm-up pair included
    assert len(slow_a.runs) == len(fast_b.runs) == 3 and ratio > 1.5  # a sleeps 4x longer than b

    target = Target("ms", "<=", 5.0, "<= 5 ms")
    fast = Result("demo", "fast", "n=1", "1 ms", {"ms": 1.0}, target)
    slow = Result("demo", "slow", "n=1", "9 ms", {"ms": 9.0}, target)
    failed = Result("demo", "failed", "n=1", "1 ms", {"ms": 1.0}, target, failed=True)
    untargeted = Result("demo", "info", "n=1", "2 ms", {"ms": 2.0})
    assert [r.met for r in (fast, slow, failed, untargeted)] == [True, False, False, None]
    table = format_table([fast, slow, untargeted]).splitlines()
    assert table[0].split(" | ")[-1] == "met" and [line.split()[-1] for line in table[2:]] == ["yes", "no", "-"]


def test_random_blobs_are_seeded_and_never_empty():
    a = random_blobs(6, 40, 60, np.random.default_rng(3), min_size=4, max_size=30)
    b = random_blobs(6, 40, 60, np.random.default_rng(3), min_size=4, max_size=30)
    assert a.shape == (6, 40, 60) and a.dtype == bool
    np.testing.assert_array_equal(a, b)
    assert (a.sum(axis=(1, 2)) > 0).all()

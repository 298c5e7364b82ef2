"""``python -m bench [NAME ...] [--quick] [--out PATH]``: run the benchmarks, print a table, write JSON.

Run it from the repository root. Without names every benchmark runs, in the order of
:data:`BENCHMARKS`. ``--quick`` uses fewer repeats and smaller subsets (for trying the suite out,
not for figures). The training step is measured once per run, in a worker subprocess, and shared:
``pipeline`` compares with it and ``efficiency`` divides by it, so running either of those alone
also runs the training-step workers. Results go to
``bench/results.json`` (or ``--out``) with the machine's description; the table goes to stdout.
The exit status is 0 even when a target is missed (benchmarks never fail a build on a slow
machine); it is 1 only when a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.common import ROOT, Result, apply_env_defaults, error_result, load_average, machine_info

BENCHMARKS = {
    "annotations": "opening a COCO train2017-sized annotation file: CocoDataset vs pycocotools, time and peak RSS",
    "targets": "target building per image (assign_grid_cells + mask targets), paper preset, 480x480",
    "pipeline": "input pipeline images/s (tiny in-memory, paper streaming) vs the training step",
    "sources": "pipeline images/s at the paper's scale: streaming, in-memory, TFRecord sources on 1 and 2 cores",
    "train_step": "training step s/step, img/s, peak RSS (paper, paper+XLA, tiny), each in a subprocess",
    "efficiency": "training FLOPs / step time as a fraction of the float32 matmul peak",
    "inference": "predict() on one 480x480 image, paper preset; post-processing with ~500 NMS inputs",
    "nms": "Matrix NMS on 500 masks (120x120, 200x336) vs a matmul of the same shape",
    "notebooks": "every notebook under strict nbval: seconds each and in total",
    "profile": "op-level time profile of the training step (tiny, paper): shares by op category, top ops",
    "export": "end-to-end latency per image: predict, SavedModel, TFLite, ONNX Runtime (tiny; paper 1333x800, 768x448)",
}
INPUTS_WIDTH = 56


@dataclasses.dataclass
class Context:
    """What the benchmarks of one run share: the mode, the selection, and training-step results
    (measured once, in a worker subprocess, and reused by pipeline, train_step and efficiency)."""

    quick: bool
    selected: tuple[str, ...]
    steps: dict = dataclasses.field(default_factory=dict)

    def step(self, case: str) -> dict:
        if case not in self.steps:
            from bench import train_step

            print(f"  [train_step worker: {case}]", flush=True)
            try:
                self.steps[case] = train_step.measure_case(case, self)
            except Exception as error:  # cached too: a failing worker is not run twice
                self.steps[case] = error
        if isinstance(self.steps[case], Exception):
            raise self.steps[case]
        return self.steps[case]


def format_table(results: list[Result]) -> str:
    """benchmark | case | inputs | figure | target | met, as aligned text columns."""
    header = ("benchmark", "case", "inputs", "figure", "target", "met")
    rows = [header] + [
        (r.benchmark, r.case, r.inputs, r.figure, r.target.text if r.target else "-",
         {True: "yes", False: "no", None: "-"}[r.met]) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    widths[2] = min(widths[2], INPUTS_WIDTH)  # long input descriptions wrap
    lines = []
    for n, row in enumerate(rows):
        chunks = textwrap.wrap(row[2], widths[2], break_on_hyphens=False) or [""]
        for k, chunk in enumerate(chunks):
            cells = [c if k == 0 else "" for c in row]
            cells[2] = chunk
            lines.append(" | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, machine: dict, args, results: list[Result], started: float) -> None:
    data = {
        "suite": "solo-course benchmarks (python -m bench)",
        "quick": args.quick,
        "selected": list(args.names),
        "machine": {**machine, "load_average_at_end": load_average()},
        "seconds": time.perf_counter() - started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results": [r.to_dict() for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv=None) -> int:
    listing = "benchmarks:\n" + "\n".join(f"  {name:<11} {what}" for name, what in BENCHMARKS.items())
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Run the benchmarks, print a table, write JSON.",
                                     epilog=listing, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller subsets (not for figures)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json", help="JSON file to write")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    args.names = [n for n in BENCHMARKS if n in args.names] if args.names else list(BENCHMARKS)

    apply_env_defaults()
    started = time.perf_counter()
    machine = machine_info()
    print(f"{machine['cpu_model']}, {machine['cpus_usable']} usable of {machine['cpu_count']} CPUs, "
          f"load {machine['load_average_at_start']}; tensorflow {machine['versions']['tensorflow']}, "
          f"keras {machine['versions']['keras']}; commit {(machine['git_commit'] or '?')[:10]}"
          f"{' (dirty)' if machine['git_dirty'] else ''}{'; QUICK mode' if args.quick else ''}", flush=True)
    ctx = Context(args.quick, tuple(args.names))
    results, errors = [], 0
    for name in args.names:
        print(f"[{name}] {BENCHMARKS[name]}", flush=True)
        begin, load = time.perf_counter(), load_average()
        try:
            rows = importlib.import_module(f"bench.{name}").run(ctx)
        except Exception as error:
            rows = [error_result(name, error)]
        errors += sum("error" in row.details for row in rows)
        for row in rows:  # how busy the machine was: other work slows every figure down
            row.details["load_average_before_after"] = [load, load_average()]
        for row in rows:
            print(f"  {row.case}: {row.figure}", flush=True)
        print(f"  ({time.perf_counter() - begin:.0f} s)", flush=True)
        results += rows
        write_json(args.out, machine, args, results, started)  # partial results survive an interruption
    print()
    print(format_table(results))
    print(f"\nwrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

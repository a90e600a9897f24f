"""The shared warm sandbox: calls from many threads share one fork server, each gets its own verdicts,
and a sandbox that goes away (idle, killed, crashed) is replaced without losing or faking a verdict."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from roopik_rl_mcp.sandbox import BatchJob, run_batch, run_python, warm

ADD = "def add(a, b):\n    return a + b\n"
PASSING = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
FAILING = "def check(candidate):\n    assert candidate(1, 2) == 4\n"


@pytest.fixture(autouse=True)
def fresh_warm_sandbox():
    warm.shutdown()
    yield
    warm.shutdown()


def warm_pid() -> int:
    assert warm._WARM is not None and warm._WARM.alive
    return warm._WARM.proc.pid


def test_consecutive_calls_share_one_sandbox():
    assert run_python(ADD, PASSING, "add").passed
    first = warm_pid()
    for _ in range(5):
        assert run_python(ADD, PASSING, "add").passed
        assert run_python(ADD, FAILING, "add").status == "failed"
    assert warm_pid() == first


def test_concurrent_callers_each_get_their_own_verdicts():
    def one(index: int):
        # Each caller's program answers with its own number; half of them are wrong on purpose.
        expected = index if index % 2 == 0 else index + 1
        code = f"def answer():\n    return {index}\n"
        return index, run_batch([BatchJob(code, f"assert answer() == {expected}", None, 5)] * 2)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(one, range(24)))
    for index, results in outcomes:
        assert [r.passed for r in results] == [index % 2 == 0] * 2, (index, results)


def test_single_calls_go_ahead_of_queued_bulk_work():
    # 12 jobs of 0.6 s on cores + 1 workers: several rounds. A single call made just after them must not
    # wait for the queue to drain (it would finish with the last round); it takes the next free worker.
    bulk = [BatchJob("import time\ntime.sleep(0.6)\n", "assert True", None, 5)] * 12
    finished = {}

    def run_bulk():
        results = run_batch(bulk)
        finished["bulk"] = time.monotonic()
        finished["results"] = results

    assert run_python(ADD, PASSING, "add").passed  # sandbox up
    started = time.monotonic()
    worker = threading.Thread(target=run_bulk)
    worker.start()
    time.sleep(0.3)  # the bulk jobs are queued in the fork server by now
    single = run_python(ADD, PASSING, "add")
    single_done = time.monotonic()
    worker.join(timeout=60)
    assert single.passed
    assert all(r.passed for r in finished["results"]) and len(finished["results"]) == 12
    assert single_done - started < (finished["bulk"] - started) / 2, (single_done - started, finished["bulk"] - started)


def test_a_sandbox_killed_while_idle_is_replaced():
    assert run_python(ADD, PASSING, "add").passed
    old = warm_pid()
    process = psutil.Process(old)  # before the kill: the warm sandbox's reader may reap it at once
    os.killpg(old, signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(0.2)  # its reader notices
    result = run_python(ADD, PASSING, "add")
    assert result.passed, result
    assert warm_pid() != old


def test_a_sandbox_killed_mid_call_fails_that_call_and_the_next_one_works():
    assert run_python(ADD, PASSING, "add").passed
    pid = warm_pid()
    threading.Timer(0.5, lambda: os.killpg(pid, signal.SIGKILL)).start()
    results = run_batch([BatchJob("import time\ntime.sleep(3)\n", "assert True", None, 5)] * 2)
    assert all(not r.passed and r.status == "error" for r in results), results
    assert all(r.errors and r.errors[0].kind == "SandboxError" for r in results)
    assert run_python(ADD, PASSING, "add").passed


def test_an_idle_sandbox_shuts_down_and_the_next_call_starts_another(monkeypatch):
    monkeypatch.setattr(warm, "IDLE_S", 0.3)
    assert run_python(ADD, PASSING, "add").passed
    old = warm._WARM
    process = psutil.Process(old.proc.pid)
    process.wait(timeout=10)  # it exits by itself once idle
    assert not old.alive
    assert run_python(ADD, FAILING, "add").status == "failed"
    assert warm._WARM is not old


def test_the_sandbox_outlives_the_thread_that_first_used_it():
    # bubblewrap dies with the *thread* that started it: a short-lived worker thread (anyio's) must not
    # take the shared sandbox with it when it ends.
    worker = threading.Thread(target=lambda: run_python(ADD, PASSING, "add"))
    worker.start()
    worker.join()
    pid = warm_pid()
    time.sleep(0.5)
    result = run_python(ADD, PASSING, "add")
    assert result.passed, result
    assert warm_pid() == pid


def test_a_long_silent_test_is_not_taken_for_a_wedged_sandbox(monkeypatch):
    monkeypatch.setattr(warm, "STALLED_S", 0.2)
    assert run_python(ADD, PASSING, "add").passed
    pid = warm_pid()
    result = run_python("import time\ntime.sleep(1.5)\n" + ADD, PASSING, "add", timeout_s=5)
    assert result.passed, result  # silent for 1.5 s > STALLED_S, but within its own timeout
    assert warm_pid() == pid


def test_a_wedged_sandbox_is_killed_and_replaced(monkeypatch):
    monkeypatch.setattr(warm, "STALLED_S", 0.2)
    assert run_python(ADD, PASSING, "add").passed
    sandbox = warm._WARM
    launched = psutil.Process(sandbox.proc.pid)
    fork_server = [p for p in [launched, *launched.children(recursive=True)]
                   if p.name().startswith("python") and "-I" in p.cmdline()]
    assert fork_server, "no fork server process found"
    for process in fork_server:
        process.send_signal(signal.SIGSTOP)  # alive but silent: wedged
    result = run_python(ADD, PASSING, "add", timeout_s=1)
    assert not result.passed and result.errors[0].kind == "SandboxError", result
    assert run_python(ADD, PASSING, "add").passed
    assert warm._WARM is not sandbox

"""The sandbox's verdicts and containment, through run_python (a real child interpreter each time)."""

from __future__ import annotations

import socket
import sys
import threading

import pytest

from roopik_rl_mcp.sandbox import isolation_level, run_python

ADD = "def add(a, b):\n    return a + b\n"
CHECK = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n    assert candidate(0, 0) == 1\n"


def test_humaneval_check_counts_each_assert():
    result = run_python(ADD, CHECK, "add")
    assert (result.status, result.tests_passed, result.tests_total, result.passed) == ("failed", 2, 3, False)
    [error] = result.errors
    assert error.kind == "AssertionError" and error.line == 4 and "candidate(0, 0) == 1" in error.message


def test_all_tests_pass():
    result = run_python(ADD, "def check(candidate):\n    assert candidate(1, 2) == 3\n", "add")
    assert result.status == "passed" and result.passed and result.tests_total == 1


def test_plain_asserts_and_test_functions_each_count():
    tests = "assert add(1, 1) == 2\ndef test_ok():\n    assert add(2, 3) == 5\ndef test_bad():\n    assert add(2, 3) == 6\n"
    result = run_python(ADD, tests)
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 2, 3)
    assert any("test_bad" in e.message for e in result.errors)


def test_assert_in_loop_counts_once_and_fails_if_any_iteration_fails():
    tests = "for i in range(5):\n    assert add(i, 0) == (i if i < 4 else -1)\n"
    result = run_python(ADD, tests)
    assert (result.tests_passed, result.tests_total) == (0, 1)


def test_syntax_error_is_build_error_with_line():
    result = run_python("x = 1\ndef f(:\n    pass\n", "assert True")
    assert result.status == "build_error" and not result.passed
    assert result.errors[0].kind == "SyntaxError" and result.errors[0].line == 2


def test_runtime_error_reports_kind_and_line():
    result = run_python("x = 1\ny = x / 0\n", "assert True")
    assert result.status == "error"
    assert (result.errors[0].kind, result.errors[0].line) == ("ZeroDivisionError", 2)


def test_candidate_exception_inside_assert_is_a_failed_test_not_a_crash():
    result = run_python("def f(x):\n    raise ValueError('no')\n", "def check(c):\n    assert c(1) == 1\n    assert True\n", "f")
    assert (result.status, result.tests_passed, result.tests_total) == ("failed", 1, 2)
    assert "ValueError" in result.errors[0].message


def test_no_tests():
    result = run_python("print('hello')\n")
    assert result.status == "no_tests" and not result.passed and result.stdout.strip() == "hello"


def test_pytest_style_test_classes_count_each_method():
    tests = ("assert add(0, 0) == 0\nclass TestAdd:\n    def expected(self):\n        return 3\n"
             "    def test_sum(self):\n        assert add(1, 2) == self.expected()\n"
             "    def test_wrong(self):\n        assert add(1, 2) == 4, 'one plus two'\n"
             "    def test_raises(self):\n        raise KeyError('k')\n")
    result = run_python(ADD, tests)
    outcomes = {t.id: (t.status, t.line) for t in result.tests}
    assert outcomes == {"assert#0": ("passed", 1), "TestAdd.test_sum": ("passed", 5),
                        "TestAdd.test_wrong": ("failed", 7), "TestAdd.test_raises": ("error", 9)}, result
    assert result.status == "failed" and result.tests_passed == 2 and result.tests_total == 4


@pytest.mark.parametrize("tests", [
    "import unittest\nclass TestAdd(unittest.IsolatedAsyncioTestCase):\n    async def test_sum(self):\n"
    "        self.assertEqual(add(1, 2), 3)\n",
    "class TestAdd:\n    def __init__(self):\n        self.n = 3\n    def test_sum(self):\n        assert add(1, 2) == self.n\n",
])
def test_test_classes_that_are_not_run_are_named_in_the_verdict(tests):
    result = run_python(ADD, tests)
    assert result.status == "no_tests" and not result.passed, result
    [error] = result.errors
    assert error.kind == "NoTestsCollected" and "TestAdd" in error.message and "pytest-style" in error.message


UNITTEST_CASES = """
import unittest
from unittest import TestCase

class TestAdd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.base = 10

    def setUp(self):
        self.one = 1
        self.addCleanup(print, "cleaned up", self._testMethodName)

    def tearDown(self):
        print("torn down", self._testMethodName)

    def test_sum(self):
        self.assertEqual(add(self.one, 2), 3)

    def testCamelCase(self):
        self.assertTrue(add(self.one, self.base) == 11)

    def test_wrong(self):
        self.assertEqual(add(2, 2), 5)

    def test_raises(self):
        with self.assertRaises(TypeError):
            add(1, "a")

    def test_subtests(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertEqual(add(i, 0), i)

    def test_error(self):
        raise KeyError("k")

    def test_skips_itself(self):
        self.skipTest("not today")

    @unittest.skip("never")
    def test_skipped(self):
        self.fail("a skipped test ran")

class TestMore(TestAdd):
    def test_more(self):
        self.assertIn(3, [add(1, 2)])

class TestBrokenSetUp(TestCase):
    @classmethod
    def setUpClass(cls):
        raise RuntimeError("no fixture")

    def test_never_runs(self):
        pass

if __name__ == "__main__":
    unittest.main()
"""


def test_unittest_test_cases_run_method_by_method_as_unittest_runs_them():
    result = run_python(ADD, UNITTEST_CASES)
    outcomes = {t.id: t.status for t in result.tests}
    own = {"test_sum": "passed", "testCamelCase": "passed", "test_wrong": "failed", "test_raises": "passed",
           "test_subtests": "passed", "test_error": "error", "test_skips_itself": "error"}
    expected = {f"TestAdd.{name}": status for name, status in own.items()}
    expected.update({f"TestMore.{name}": status for name, status in own.items()}, **{
        "TestMore.test_more": "passed", "TestBrokenSetUp.test_never_runs": "error"})
    assert outcomes == expected, result
    assert list(outcomes)[:7] == sorted(list(outcomes)[:7])  # unittest's order: sorted by name
    messages = {t.id: t.message for t in result.tests}
    assert "4 != 5" in messages["TestAdd.test_wrong"] and "KeyError" in messages["TestAdd.test_error"]
    assert "not passed" in messages["TestAdd.test_skips_itself"]
    assert "setUpClass RuntimeError" in messages["TestBrokenSetUp.test_never_runs"]
    line = {t.id: t.line for t in result.tests}
    assert UNITTEST_CASES.splitlines()[line["TestAdd.test_wrong"] - 1].strip() == "def test_wrong(self):"
    assert result.status == "failed" and result.tests_passed == 9 and result.tests_total == 16
    # Every method ran on a fresh instance with its tearDown and cleanups, after its class's setUpClass.
    assert result.stdout.count("torn down") == 15 and result.stdout.count("cleaned up") == 15, result.stdout


UNITTEST_PASSING = """
import logging, unittest, warnings
from unittest import mock

class TestAdd(unittest.TestCase):
    def test_sum(self):
        self.assertEqual(add(1, 2), 3)
        self.assertAlmostEqual(add(0.1, 0.2), 0.3)
        self.assertCountEqual([add(1, 1), add(0, 1)], [1, 2])
        self.assertRegex(str(add(20, 22)), r"^4[0-9]$")

    def test_warns_and_logs(self):
        with self.assertWarns(UserWarning):
            warnings.warn("careful")
        with self.assertLogs("app", level="INFO") as logs:
            logging.getLogger("app").info("sum %d", add(1, 2))
        self.assertEqual(logs.output, ["INFO:app:sum 3"])

    def test_mock(self):
        spy = mock.Mock(side_effect=add)
        self.assertEqual(spy(2, 3), 5)
        spy.assert_called_once_with(2, 3)
"""


def test_a_unittest_file_that_passes_passes_warnings_logs_and_mocks_included():
    result = run_python(ADD, UNITTEST_PASSING)
    assert result.passed and result.status == "passed", result
    assert [t.id for t in result.tests] == ["TestAdd.test_mock", "TestAdd.test_sum", "TestAdd.test_warns_and_logs"]


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)", "raise SystemExit(0)"])
def test_exiting_early_is_never_a_pass(exit_call):
    code = f"import os, sys\ndef add(a, b):\n    return a + b\n{exit_call}\n"
    result = run_python(code, "def check(candidate):\n    assert candidate(1, 2) == 3\n", "add")
    assert result.status == "error" and not result.passed and result.tests_passed == 0


def test_exit_inside_tested_function_is_never_a_pass():
    code = "import os\ndef add(a, b):\n    os._exit(0)\n"
    result = run_python(code, "def check(candidate):\n    assert candidate(1, 2) == 3\n", "add")
    assert not result.passed and result.status == "error"


def test_printing_a_success_marker_does_not_pass():
    code = 'print(\'{"status": "passed", "passed": true}\')\nimport os\nos._exit(0)\n'
    result = run_python(code, "assert False")
    assert not result.passed


def test_infinite_loop_times_out():
    result = run_python("while True:\n    pass\n", "assert True", timeout_s=1)
    assert result.status == "timeout" and not result.passed


def test_hang_inside_a_test_times_out_with_partial_credit():
    code = "def f(x):\n    while x:\n        pass\n    return 0\n"
    result = run_python(code, "def check(c):\n    assert c(0) == 0\n    assert c(1) == 0\n", "f", timeout_s=1)
    assert result.status == "timeout" and result.tests_passed == 1 and result.tests_total == 2


def test_output_flood_is_truncated_with_a_marker():
    result = run_python("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 10000)\n")
    assert "[truncated" in result.stdout and len(result.stdout) < 100_000


def test_server_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    result = run_python("import os\nprint(sorted(os.environ.items()))\n")
    assert "sk-test-secret-value" not in result.stdout and "OPENAI_API_KEY" not in result.stdout


def test_memory_bomb_is_stopped():
    result = run_python("x = bytearray(4 * 1024 ** 3)\n", "assert True")
    assert result.status == "error" and result.errors[0].kind == "MemoryError"


MULTIPROCESSING = """
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

def square(x):
    return x * x

def worker(queue, lock, x):
    with lock:
        queue.put(x * x)

def with_pool(n):
    with mp.Pool(2) as pool:
        return pool.map(square, range(n))

def with_processes(n):
    queue, lock = mp.Queue(), mp.Lock()
    processes = [mp.Process(target=worker, args=(queue, lock, i)) for i in range(n)]
    for process in processes:
        process.start()
    out = sorted(queue.get(timeout=5) for _ in processes)
    for process in processes:
        process.join()
    return out

def with_executor(n):
    with ProcessPoolExecutor(2) as executor:
        return list(executor.map(square, range(n)))
"""


def test_multiprocessing_works_inside_a_test():
    """Pools pickle the solution's functions by module name, and locks and queues need /dev/shm: a correct
    solution that uses them must not be judged an error."""
    tests = ("assert with_pool(5) == [0, 1, 4, 9, 16]\nassert with_processes(4) == [0, 1, 4, 9]\n"
             "assert with_executor(4) == [0, 1, 4, 9]\n")
    result = run_python(MULTIPROCESSING, tests, timeout_s=30)
    assert result.status == "passed" and result.tests_passed == 3, result


@pytest.mark.parametrize("name, code", [
    ("asyncio (types.coroutine rewrites its own functions' code at import)",
     "import asyncio\nasync def twice(x):\n    await asyncio.sleep(0.01)\n    return 2 * x\n"
     "assert asyncio.run(twice(21)) == 42\n"),
    ("a Python subprocess (its loader opens and closes low descriptors)",
     "import subprocess, sys\nout = subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, "
     "text=True)\nassert out.stdout.strip() == '42', out.stderr\n"),
    ("a shell pipeline", "import subprocess\n"
     "assert subprocess.run('echo hi | tr a-z A-Z', shell=True, capture_output=True, text=True).stdout == 'HI\\n'\n"),
    ("getpass.getuser()", "import getpass\nassert getpass.getuser() == 'sandbox'\n"),
    ("a dataclass with postponed annotations (dataclasses reads sys.modules[cls.__module__])",
     "from __future__ import annotations\nfrom dataclasses import dataclass, field\nfrom typing import ClassVar\n"
     "@dataclass\nclass Point:\n    x: int\n    tags: list[str] = field(default_factory=list)\n"
     "    count: ClassVar[int] = 0\nassert Point(1).x == 1\n"),
    ("pickling an instance of the solution's own class",
     "import pickle\nclass Box:\n    def __init__(self, v):\n        self.v = v\n"
     "assert pickle.loads(pickle.dumps(Box(3))).v == 3\n"),
])
def test_everyday_library_use_works_inside_a_test(name, code):
    result = run_python(code + "def ok():\n    return True\n", "assert ok()", timeout_s=20)
    assert result.status == "passed", (name, result)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network isolation needs Linux")
def test_no_network_even_to_loopback():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(3)
    port = listener.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(listener)), daemon=True)
    thread.start()
    code = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    result = run_python(code, "assert True")
    thread.join(5)
    listener.close()
    assert result.status == "error" and result.errors[0].kind in ("OSError", "ConnectionRefusedError", "PermissionError")
    assert isolation_level() in ("bwrap", "netns+uid", "netns", "uid", "process")
    assert accepted == [None]


def _accept(listener: socket.socket):
    try:
        return listener.accept()
    except OSError:
        return None


def test_batch_of_distinct_tests_keeps_each_jobs_own_verdict():
    """Tests are compiled a few jobs ahead; every job still gets the verdict of its own tests, in order."""
    from roopik_rl_mcp.sandbox import BatchJob, run_batch

    jobs = []
    for i in range(12):
        if i == 4:
            tests = "def check(candidate):\n    assert candidate(1, 2) == (\n"  # not even valid Python
        else:
            tests = f"def check(candidate):\n    assert candidate({i}, 1) == {i + 1 if i % 3 else -1}\n"
        jobs.append(BatchJob(ADD, tests, "add", 10))
    results = run_batch(jobs, workers=1)
    assert results[4].status == "error" and results[4].errors[0].kind == "TestSyntaxError"
    for i, result in enumerate(results):
        if i != 4:
            assert result.passed == bool(i % 3), (i, result.status)


def test_tests_that_follow_each_other_in_a_worker_keep_their_own_output_and_verdicts():
    """A worker's pipes carry one test after another: what each test wrote, and its verdict, stay its own,
    even when the next test starts writing at once."""
    from roopik_rl_mcp.sandbox import BatchJob, run_batch

    jobs = [BatchJob(f"import sys\nsys.stdout.write('job-{i};' * 3000)\nsys.stderr.write('err-{i};')\n",
                     f"assert {i % 2} == 0" if i % 5 else "assert True", None, 10) for i in range(60)]
    for results in (run_batch(jobs, workers=1), run_batch(jobs)):  # a sandbox of its own; the warm one
        for i, result in enumerate(results):
            assert result.stdout == f"job-{i};" * 3000 and result.stderr == f"err-{i};", (i, result.stdout[:40])
            assert result.passed == (i % 5 == 0 or i % 2 == 0), (i, result.status)


def test_a_batch_starts_the_tests_that_ran_longest_last_time_first():
    """The warm sandbox remembers how long each tests source took: the next batch starts the slowest first
    (longest-first scheduling), while a first sight keeps the order the jobs came in. Every verdict still
    goes to its own job."""
    import uuid

    from roopik_rl_mcp.sandbox import BatchJob, run_batch

    tag = uuid.uuid4().hex  # tests this sandbox has not seen before
    started = "import time\nprint(time.time())\n"
    short = [BatchJob(started + f"x = {i}\n", f"assert x == {i}  # {tag} short {i}", None, 10) for i in range(24)]
    slow = BatchJob(started + "time.sleep(0.3)\n", f"assert True  # {tag} slow", None, 10)
    for round_ in ("first", "again"):
        results = run_batch(short + [slow])
        assert all(r.passed for r in results), results
        starts = [float(r.stdout) for r in results]
        earlier = sum(start < starts[-1] for start in starts[:-1])
        if round_ == "first":
            assert earlier >= 20, starts  # came last, started after (nearly) all the others
        else:
            # Started first: only the tests on the other slots can print before it, a few each when a loaded CPU
            # runs the slow test's process a few ms late; came last (above) is 20 or more.
            assert earlier <= len(short) // 3, starts

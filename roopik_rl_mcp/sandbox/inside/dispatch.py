"""The fork server: jobs in (stdin), tests out to a dispatcher, verdicts back (the channel, fd 1 at start).

Single-threaded, and it never runs, nor even parses, the code under test. Per job it compiles the tests (once
per distinct tests source, tests_compiler.py) and hands the job to its dispatcher: worker slots (slots.py)
wherever the kernel allows them, else flat dispatch (flat.py), one test at a time forked from here. It kills
a test at its deadline and turns what the test process reported into the job's verdict (verdict.py)."""

from __future__ import annotations

import collections
import gc
import heapq
import itertools
import json
import math
import os
import select
import signal
import sys
import time

from . import seccomp
from .confinement import landlock_scope
from .flat import FlatForker
from .harness import Harness
from .kernel import PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, drain, libc, probe_in_child
from .slots import TESTS_CACHE, SlotPool
from .testdirs import probe_namespaces
from .tests_compiler import CompiledTests
from .verdict import JobSpec, TestRun

WORKDIR_IN_SANDBOX = "/tmp/sandbox"  # inside the per-test /tmp: one mount covers both
COMPILE_AHEAD = 5
"""When a job's tests are new, the tests of this many upcoming jobs are compiled with them (see `start`)."""


class ForkServer:
    def __init__(self, cfg: dict, channel: int) -> None:
        self.cfg = cfg
        self.channel = channel
        self.uid, self.gid = os.getuid(), os.getgid()  # as seen here; a slot maps them into its namespace
        self.in_slots = probe_namespaces(cfg)
        self.seccomp = probe_in_child(lambda: seccomp.install("base", "test"))
        self.landlock = probe_in_child(landlock_scope)
        # From here on the fork server itself runs under the base part of the filter (test processes inherit
        # it and add the rest): it needs none of those calls, and each test saves installing them.
        self.base_filter = self.seccomp and seccomp.install("base")
        self.slot_filter = False  # set in a worker slot that installed its part (its tests inherit it)
        self.harness = Harness(proc_visible=not self.in_slots)
        self.dispatcher = SlotPool(self) if self.in_slots else FlatForker(self)
        # Bulk jobs wait in a heap, the longest expected first (see `expected_ms`); single calls wait in
        # `urgent`, in order, ahead of them.
        self.queue: list[tuple[float, int, dict]] = []
        self.queued = itertools.count()
        self.urgent: collections.deque[dict] = collections.deque()
        self.tests_cache: dict[str, CompiledTests] = {}
        self.serials = itertools.count()
        self.running: set[TestRun] = set()
        # A pipe's descriptor -> (its TestRun, or its slots.Slot; stream name; whether it outlives its test)
        self.by_fd: dict[int, tuple] = {}
        self.stdin_open = True
        self.stdin_buffer = bytearray()
        self.poller = select.poll()
        self.wake_r, self.wake_w = os.pipe()
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)  # every test's stdin, opened once
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        os.set_blocking(0, False)
        self.poller.register(0, select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)

    def send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.channel, view)
            except BlockingIOError:
                select.select([], [self.channel], [], 1.0)
                continue
            view = view[written:]

    def hello(self) -> None:
        self.send({"hello": {"pid": os.getpid(), "uid": os.getuid(), "pertest_namespaces": self.in_slots,
                             "seccomp": self.seccomp, "landlock": self.landlock,
                             "workers": self.dispatcher.workers, "python": sys.version.split()[0]}})

    # -- main loop ---------------------------------------------------------------------------------
    def start_waiting(self) -> None:
        """Start waiting jobs while the dispatcher has room: single calls first, then bulk jobs."""
        while (self.urgent or self.queue) and self.dispatcher.has_room():
            self.start(self.urgent.popleft() if self.urgent else heapq.heappop(self.queue)[2])

    def enqueue(self, job: dict) -> None:
        if job.get("urgent"):
            self.urgent.append(job)
        else:
            heapq.heappush(self.queue, (-self.expected_ms(job), next(self.queued), job))

    def expected_ms(self, job: dict) -> float:
        """How long a job is expected to run: as long as the last job with the same tests took here (tests
        not seen yet: first of all, in the order they came). A batch's wall time is its slowest test's start
        plus its run time: started first, a long test runs beside the short ones instead of after them
        (longest-first scheduling). Evaluations and RL rewards run the same tasks' tests again and again."""
        tests = job.get("tests")
        compiled = self.tests_cache.get(tests if isinstance(tests, str) else "")
        if compiled is None or compiled.last_ms is None:
            return math.inf
        return compiled.last_ms

    def serve(self) -> None:
        while True:
            self.start_waiting()
            if not self.stdin_open and not self.urgent and not self.queue and not self.running:
                return
            timeout = None
            if self.running:
                timeout = max(0, min(r.deadline for r in self.running) - time.monotonic())
                timeout = int(timeout * 1000) + 1
            try:
                events = self.poller.poll(timeout)
            except InterruptedError:
                events = []
            for fd, _ in events:
                if fd == 0:
                    self.read_jobs()
                elif fd == self.wake_r:
                    drain(self.wake_r)
                elif self.dispatcher.handle(fd):
                    pass
                elif fd in self.by_fd:
                    self.read_child(fd)
            self.reap()
            now = time.monotonic()
            for run in list(self.running):
                if not run.killed and now >= run.deadline:
                    run.timed_out = True
                    self.kill(run)
                elif not run.killed and run.output_exceeded:
                    self.kill(run)

    def read_jobs(self) -> None:
        try:
            data = os.read(0, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self.stdin_open = False
            self.poller.unregister(0)
            data = b"\n"
        self.stdin_buffer += data
        while True:
            cut = self.stdin_buffer.find(b"\n")
            if cut < 0:
                break
            line = bytes(self.stdin_buffer[:cut]).strip()
            del self.stdin_buffer[: cut + 1]
            if line:
                try:
                    job = json.loads(line)
                except ValueError:
                    continue
                if isinstance(job, dict):
                    self.enqueue(job)

    def fail(self, raw: dict, kind: str, message: str) -> None:
        self.send({"id": raw.get("id") if isinstance(raw, dict) else None, "status": "error", "tests": [],
                   "stdout": "", "stderr": "", "errors": [{"kind": kind, "message": message}], "duration_ms": 0,
                   "exit_code": None, "first_failure": message})

    def start(self, raw: dict) -> None:
        started = time.monotonic()
        try:  # a malformed job, or a bug here, fails that job, not the batch
            spec = JobSpec(raw, self.cfg)
            if (raw.get("tests") or "") not in self.tests_cache:
                # Compile a few upcoming jobs' tests too: while tests it forked run (flat dispatch), each page this
                # process writes costs a copy-on-write fault, so one burst of compiling touches them once for all.
                for _, _, ahead in heapq.nsmallest(COMPILE_AHEAD, self.queue):
                    try:
                        if isinstance(ahead, dict) and isinstance(ahead.get("tests"), str):
                            self.compiled_tests(ahead["tests"])
                    except Exception:  # noqa: BLE001 - that job fails on its own turn
                        pass
            spec.tests = self.compiled_tests(raw.get("tests"))
        except Exception as exc:
            self.fail(raw, "HarnessError", f"{type(exc).__name__}: {exc}")
            return
        self.dispatcher.start(spec, started)

    def compiled_tests(self, source: str | None) -> CompiledTests:
        key = source or ""
        compiled = self.tests_cache.get(key)
        if compiled is None:
            if len(self.tests_cache) >= TESTS_CACHE:
                self.tests_cache.pop(next(iter(self.tests_cache)))
            compiled = CompiledTests(source)
            compiled.serial = next(self.serials)
            if self.dispatcher.prepares_tests_here:
                self.harness.prepare(compiled)
            self.tests_cache[key] = compiled
        return compiled

    # -- test processes ----------------------------------------------------------------------------
    def read_child(self, fd: int) -> None:
        holder, name, shared = self.by_fd[fd]
        run = holder.run if shared else holder
        for _ in range(16):
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                if shared:  # the slot is gone: its event pipe says so too
                    self.poller.unregister(fd)
                    self.by_fd.pop(fd)
                else:
                    self.close_fd(fd)
                return
            if run is None:  # nothing should write between tests; whatever did is not any test's
                continue
            if name == "records":
                run.feed_records(data)
            else:
                run.feed_output(name, data)

    def close_fd(self, fd: int) -> None:
        if fd in self.by_fd:
            run, name, _ = self.by_fd.pop(fd)
            run.fds.pop(name, None)
            self.poller.unregister(fd)
            os.close(fd)

    def kill(self, run: TestRun) -> None:
        """Kill the test and everything it started (see the dispatcher's `kill`). A test a slot has not
        reported started yet is killed when it reports."""
        run.killed = True
        if run.pid is not None:
            self.dispatcher.kill(run)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.dispatcher.reaped(pid, status)

    def drain(self, run: TestRun) -> None:
        """The test process is gone, and with it (per-test pid namespace) everything the test started. Take
        what is already in the pipes without waiting for EOF: a stray holder cannot stall the verdict."""
        if run.drained:
            return
        run.drained = True
        for name, fd in list(run.fds.items()):
            while True:
                try:
                    data = os.read(fd, 1 << 16)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    break
                if name == "records":
                    run.feed_records(data)
                else:
                    run.feed_output(name, data)
            if run.slot is None:
                self.close_fd(fd)

    def finish(self, run: TestRun) -> None:
        self.drain(run)
        self.dispatcher.cleanup(run)
        duration = int((time.monotonic() - run.started) * 1000)
        if run.spec.tests is not None:
            run.spec.tests.last_ms = duration
        try:
            result = run.result(duration)
        except Exception as exc:
            result = {"status": "error", "tests": [], "stdout": "", "stderr": "", "duration_ms": duration,
                      "errors": [{"kind": "HarnessError", "message": f"{type(exc).__name__}: {exc}"}],
                      "exit_code": None, "first_failure": str(exc)}
        result["id"] = run.spec.id
        self.send(result)


def main() -> None:
    # The channel to the server moves off fd 1; fd 1 becomes /dev/null for this process.
    channel = os.dup(1)
    os.set_inheritable(channel, False)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.close(devnull)
    # Nobody else (same uid) may read this process's memory or reopen its descriptors through /proc.
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            break
        line += chunk
    cfg = json.loads(line or b"{}")
    cfg.setdefault("workdir", WORKDIR_IN_SANDBOX)
    server = ForkServer(cfg, channel)
    gc.freeze()  # children do not touch (copy) these objects' pages when their collector runs
    server.dispatcher.start_all()
    server.hello()
    server.serve()
    os._exit(0)


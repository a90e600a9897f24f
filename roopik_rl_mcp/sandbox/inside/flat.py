"""Flat dispatch: where the kernel allows no worker slots (no nested user namespaces: the `uid` and
`process` levels, some containers), the fork server forks each test itself, one at a time.

Weaker than worker slots, and the hello says so: the test sees the sandbox's /proc (the audit hook refuses
opening it, see harness.Harness) and its /tmp; there is no pid namespace, so after each test everything
re-parented to the fork server (a child subreaper) is killed, and the test's work dir removed."""

from __future__ import annotations

import os
import select
import signal

from .confinement import run_test_process
from .verdict import TestRun


class FlatForker:
    prepares_tests_here = True  # the test processes are forked from the fork server itself
    workers = 1

    def __init__(self, server) -> None:
        self.server = server
        self.by_pid: dict[int, TestRun] = {}

    def start_all(self) -> None:
        """Nothing to start ahead: each test is forked when its turn comes."""

    def has_room(self) -> bool:
        return len(self.server.running) < self.workers

    def start(self, spec, started: float) -> None:
        """Fork the test from the fork server, with pipes of its own."""
        server = self.server
        records_r, records_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        workdir = os.path.join(server.cfg["workdir"], f"job-{spec.id}")
        try:
            os.makedirs(workdir, mode=0o700, exist_ok=True)
            pid = os.fork()
        except OSError as exc:
            for fd in (records_r, records_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            server.fail(spec.raw, "SandboxError", f"could not start the test process: {exc}")
            return
        if pid == 0:
            try:
                run_test_process(server, spec.raw, spec.limits, spec.tests, records_w, out_w, err_w, workdir)
            finally:
                os._exit(70)
        for fd in (records_w, out_w, err_w):
            os.close(fd)
        run = TestRun(spec, pid, {"records": records_r, "stdout": out_r, "stderr": err_r}, started)
        run.workdir = workdir
        server.running.add(run)
        self.by_pid[pid] = run
        for name, fd in run.fds.items():
            os.set_blocking(fd, False)
            server.by_fd[fd] = (run, name, False)
            server.poller.register(fd, select.POLLIN)

    def kill(self, run: TestRun) -> None:
        """SIGKILL to the test process and its process group (its session: it called setsid)."""
        for kill in (os.kill, os.killpg):
            try:
                kill(run.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def reaped(self, pid: int, status: int) -> None:
        run = self.by_pid.pop(pid, None)
        if run is not None:
            self.server.running.discard(run)
            run.status = status
            self.server.finish(run)

    def cleanup(self, run: TestRun) -> None:
        """After a test: its process group, whatever it left re-parented here, and its work dir."""
        try:
            os.killpg(run.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _sweep_descendants()
        import shutil  # here, not at the top: every fork of a worker slot would pay for its pages

        shutil.rmtree(run.workdir, ignore_errors=True)

    def handle(self, fd: int) -> bool:
        return False


def _sweep_descendants() -> None:
    """Flat mode: kill everything re-parented to this process (it is a child subreaper)."""
    me = os.getpid()
    for _ in range(50):
        victims = []
        try:
            entries = os.listdir("/proc")
        except OSError:
            return
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
                ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me:
                victims.append(int(entry))
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in victims:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


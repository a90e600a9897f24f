"""Dispatch through worker slots: the fork server's strategy wherever the kernel allows nested namespaces.

At start the fork server clones one slot per worker into a user and mount namespace of its own (`SlotPool`).
A slot is trusted code and runs one test at a time (`slot_main`): it clones the test process into a fresh pid
namespace, where it is pid 1, waits on that pid, mounts afresh whatever of the tests' directories it changed
(testdirs.TestDirs), and reports. The fork server kills the test's pid 1 at the deadline; the kernel then
kills everything else in its pid namespace: a double-forked, setsid'd process cannot outlive its test."""

from __future__ import annotations

import errno
import gc
import marshal
import os
import select
import signal
import sys

from . import seccomp
from .confinement import run_test_process
from .kernel import (PR_SET_PDEATHSIG, RECORD_FD, SLOT_NAMESPACES, TEST_NAMESPACES, clone, close_all_but, libc,
                     read_exactly, reset_signals, write_all)
from .testdirs import TestDirs, enter_slot_namespaces, kept_handles
from .tests_compiler import CompiledTests
from .verdict import TestRun

TESTS_CACHE = 256
"""Distinct compiled tests a slot keeps (and the fork server remembers which it sent)."""
MAX_RESPAWNS = 64
"""Slots started in place of lost ones, at most, per fork server."""


class Slot:
    """The fork server's handle on a worker slot: the pipe it takes jobs from, the pipe it reports on, and
    the pipes its tests write their records and output to. Those are kept from test to test: when a test
    ends, everything that could write to them is gone with its pid namespace."""

    def __init__(self, jobs_w: int, events_r: int, fds: dict) -> None:
        self.jobs_w, self.events_r, self.fds = jobs_w, events_r, fds
        self.run: TestRun | None = None
        self.events = bytearray()
        self.known: dict[int, None] = {}  # serials of the compiled tests this slot holds, oldest first


class SlotPool:
    """The worker slots of one fork server, and the fork server's side of their protocol."""

    prepares_tests_here = False  # each slot prepares its own copy: the helpers are its own objects

    def __init__(self, server) -> None:
        self.server = server
        cpus = os.cpu_count() or 1
        self.workers = max(1, min(int(server.cfg.get("workers") or cpus), 64))
        self.slots: list[Slot] = []
        self.idle: list[Slot] = []
        self.by_events: dict[int, Slot] = {}
        self.respawns = 0

    def start_all(self) -> None:
        for _ in range(self.workers):
            self.spawn()
        self.workers = len(self.slots)

    def has_room(self) -> bool:
        return bool(self.idle) or not self.slots  # no slot left at all: jobs fail at once rather than wait

    def start(self, spec, started: float) -> None:
        """Hand the job to an idle slot, with its compiled tests the first time that slot needs them."""
        server = self.server
        if not self.idle:
            server.fail(spec.raw, "SandboxError", "could not start the test process: no worker slot left")
            return
        slot = self.idle.pop()
        tests = spec.tests
        blob = None
        if tests.serial not in slot.known:
            blob = tests.wire()
            slot.known[tests.serial] = None
            if len(slot.known) > TESTS_CACHE:
                slot.known.pop(next(iter(slot.known)))
        raw = spec.raw
        message = marshal.dumps(({"id": spec.id, "code": raw.get("code"), "entry_point": raw.get("entry_point")},
                                 spec.limits, tests.serial, blob))
        try:
            write_all(slot.jobs_w, len(message).to_bytes(4, "big") + message)
        except (OSError, ValueError) as exc:
            server.fail(raw, "SandboxError", f"could not start the test process: {exc}")
            self.lose(slot)
            return
        run = TestRun(spec, None, slot.fds, started)
        run.slot = slot
        slot.run = run
        server.running.add(run)

    def kill(self, run: TestRun) -> None:
        """SIGKILL to the test's pid 1: its pid namespace, and everything in it, goes too. (The slot reaps the
        pid only after the test is gone, and reports that right away, so the pid cannot have been reused.)"""
        try:
            os.kill(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reaped(self, pid: int, status: int) -> None:
        """A child of the fork server ended: a slot (its event pipe's EOF says so, see `lose`)."""

    def cleanup(self, run: TestRun) -> None:
        """Nothing left of a finished test: its pid namespace took its processes, its slot its directories."""

    def handle(self, fd: int) -> bool:
        """Read `fd` if it is a slot's event pipe (True), else leave it to the fork server (False)."""
        slot = self.by_events.get(fd)
        if slot is None:
            return False
        self.read_events(slot)
        return True

    def spawn(self) -> None:
        server = self.server
        jobs_r, jobs_w = os.pipe()
        events_r, events_w = os.pipe()
        pipes = {name: os.pipe() for name in ("records", "stdout", "stderr")}
        try:
            pid = clone(SLOT_NAMESPACES)
        except OSError as exc:
            for fd in (jobs_r, jobs_w, events_r, events_w, *(fd for pair in pipes.values() for fd in pair)):
                os.close(fd)
            sys.stderr.write(f"roopik sandbox: could not start a worker slot: {exc}\n")
            return
        if pid == 0:
            try:
                slot_main(server, jobs_r, events_w, {name: pair[1] for name, pair in pipes.items()})
            except BaseException as exc:  # a bug in the sandbox: say what, then go (the fork server starts another)
                sys.stderr.write(f"roopik sandbox: worker slot failed: {type(exc).__name__}: {exc}\n")
            finally:
                os._exit(70)
        for fd in (jobs_r, events_w, *(pair[1] for pair in pipes.values())):
            os.close(fd)
        slot = Slot(jobs_w, events_r, {name: pair[0] for name, pair in pipes.items()})
        for fd in (events_r, *slot.fds.values()):
            os.set_blocking(fd, False)
            server.poller.register(fd, select.POLLIN)
        self.by_events[events_r] = slot
        for name, fd in slot.fds.items():
            server.by_fd[fd] = (slot, name, True)
        self.slots.append(slot)
        self.idle.append(slot)

    def read_events(self, slot: Slot) -> None:
        """What a slot reports, a line each: S <pid> (test started), E <wait status> (test over, its
        directories ready for the next one), F <why> (the test could not be started)."""
        server = self.server
        try:
            data = os.read(slot.events_r, 4096)
        except BlockingIOError:
            return
        if not data:
            self.lose(slot)
            return
        slot.events += data
        while True:
            cut = slot.events.find(b"\n")
            if cut < 0:
                return
            kind, value = bytes(slot.events[:1]), bytes(slot.events[2:cut])
            del slot.events[: cut + 1]
            run = slot.run
            if run is None:
                continue
            if kind == b"S":
                run.pid = int(value)
                if run.killed:
                    server.kill(run)
            elif kind in (b"E", b"F"):
                slot.run = None
                server.running.discard(run)
                self.idle.append(slot)
                if kind == b"E":
                    run.status = int(value)
                    server.drain(run)  # all of it: the slot's pipes are the next test's once it starts
                    server.start_waiting()  # the slot's next test first: the verdict can wait, the core cannot
                    server.finish(run)
                else:
                    server.fail(run.spec.raw, "SandboxError",
                                f"could not start the test process: {value.decode(errors='replace')}")

    def lose(self, slot: Slot) -> None:
        """A slot ended (it never should): fail its test, close its pipes, start another in its place."""
        server = self.server
        if slot not in self.slots:
            return
        self.slots.remove(slot)
        if slot in self.idle:
            self.idle.remove(slot)
        for fd in (slot.events_r, *slot.fds.values()):
            try:
                server.poller.unregister(fd)
            except KeyError:  # a pipe that already read EOF
                pass
            server.by_fd.pop(fd, None)
            os.close(fd)
        self.by_events.pop(slot.events_r, None)
        os.close(slot.jobs_w)
        run = slot.run
        if run is not None:
            server.running.discard(run)
            if run.pid:
                server.kill(run)
            server.fail(run.spec.raw, "SandboxError", "the sandbox's worker process ended during this test")
        if self.respawns < MAX_RESPAWNS:
            self.respawns += 1
            self.spawn()


def slot_main(server, jobs_r: int, events_w: int, outputs: dict) -> None:
    """A worker slot: trusted code only, in a user and mount namespace of its own, one test at a time.

    Per job: clone the test into a pid namespace of its own, wait for it, mount afresh whatever of the tests'
    directories it changed (see testdirs.TestDirs), report. Set up once here rather than per test: the uid map, the
    hidden directories, the tests' directories, and the namespaces themselves (a mount namespace per test
    costs its copy and an RCU-synchronised teardown on every exit). Between forks this process writes as
    little memory as it can: every page it writes while its test lives costs a copy."""
    reset_signals()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the fork server gone: so is this slot
    # The tests' verdict pipe sits at RECORD_FD for good (not inherited across exec): a test process finds it
    # there, and the slot's part of the seccomp filter keeps it there.
    fds = {"jobs": jobs_r, "events": events_w, "devnull": server.devnull, **outputs}
    for name, fd in fds.items():
        if fd == RECORD_FD and name != "records":
            fds[name] = os.dup(fd)
    if fds["records"] != RECORD_FD:
        os.dup2(fds["records"], RECORD_FD)
        fds["records"] = RECORD_FD
    os.set_inheritable(RECORD_FD, False)
    os.dup2(fds["devnull"], 0)
    close_all_but(set(fds.values()))
    jobs_r, events_w, server.devnull = fds["jobs"], fds["events"], fds["devnull"]
    cfg = server.cfg
    kept = kept_handles(cfg)
    if not enter_slot_namespaces(cfg, server.uid, server.gid, kept):
        raise OSError("could not set up the worker slot's namespaces")
    dirs = TestDirs(cfg, kept)
    if not dirs.prepare():
        raise OSError("could not mount the worker slot's directories for its tests")
    if server.seccomp and server.base_filter:
        server.slot_filter = seccomp.install("slot")
    compiled: dict[int, CompiledTests] = {}
    records_w, out_w, err_w, workdir = RECORD_FD, fds["stdout"], fds["stderr"], cfg["workdir"]
    gc.freeze()
    while True:
        header = read_exactly(jobs_r, 4)
        message = header and read_exactly(jobs_r, int.from_bytes(header, "big"))
        if not message:
            os._exit(0)
        raw, limits, serial, blob = marshal.loads(message)
        if blob is not None:
            tests = CompiledTests.from_wire(blob)
            server.harness.prepare(tests)
            compiled[serial] = tests
            if len(compiled) > TESTS_CACHE:
                compiled.pop(next(iter(compiled)))
            gc.freeze()  # its tests' collectors need not walk (and copy) these objects
        try:
            if not dirs.fit(limits.get("tmpfs_bytes")):
                raise OSError(errno.EPERM, "could not mount the test's directories")
            pid = clone(TEST_NAMESPACES)
        except OSError as exc:
            os.write(events_w, b"F " + str(exc).encode(errors="replace")[:500].replace(b"\n", b" ") + b"\n")
            if not dirs.prepare():  # back to a known state, or this slot gives way to a new one
                raise OSError(f"could not mount the test's directories ({exc})")
            continue
        if pid == 0:
            try:
                run_test_process(server, raw, limits, compiled[serial], records_w, out_w, err_w, workdir)
            finally:
                os._exit(70)
        os.write(events_w, b"S %d\n" % pid)
        _, status = os.waitpid(pid, 0)
        changed = dirs.check()  # all its processes are gone with its pid namespace: nothing changes them now
        clean = not changed or dirs.renew(changed)
        os.write(events_w, b"E %d\n" % status)
        if not clean:  # a slot that cannot give the next test fresh directories gives way to a new one
            raise OSError(f"could not mount the test's directories afresh ({', '.join(changed)})")


"""What a test process does to itself, in this order, before any of its code exists: descriptors (stdin
/dev/null, stdout and stderr on their pipes, the verdict pipe at RECORD_FD and nothing else), a session of its
own, no capabilities, a Landlock scope, rlimits, the seccomp filter; then it compiles the solution (under those
limits, never in the fork server) and hands over to the harness. Untrusted code runs only after that."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal

from . import seccomp
from .kernel import PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, RECORD_FD, libc, reset_signals
from .tests_compiler import Job


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


# Landlock (Linux >= 6.12, ABI 6): a domain of its own per test, scoped so that its processes can neither
# connect to abstract Unix sockets made outside it (another test's: every test of a batch shares one network
# namespace) nor signal processes outside it. Same syscall numbers on every architecture.
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_RESTRICT_SELF = 444, 446
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET, LANDLOCK_SCOPE_SIGNAL = 1, 2


class _LandlockRulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


_LANDLOCK_ATTR = _LandlockRulesetAttr(0, 0, LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL)
_LANDLOCK_ARGS = (ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(_LANDLOCK_ATTR),
                  ctypes.c_size_t(ctypes.sizeof(_LANDLOCK_ATTR)), ctypes.c_uint32(0))


def landlock_scope() -> bool:
    """Enter a Landlock domain of this process's own (inherited by its children). False where the kernel has
    no Landlock or an ABI older than 6 (it refuses the `scoped` field)."""
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # what an unprivileged process needs to restrict itself
    ruleset = libc.syscall(*_LANDLOCK_ARGS)
    if ruleset < 0:
        return False
    try:
        restrict = ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF)
        return libc.syscall(restrict, ctypes.c_long(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


_CAP_HEADER = _CapHeader(0x20080522, 0)
_CAP_DATA = (_CapData * 2)()
_CAP_ARGS = (ctypes.byref(_CAP_HEADER), _CAP_DATA)


def drop_capabilities() -> None:
    """No capabilities left (in the test's own user namespace). With no_new_privs (set with the seccomp filter,
    or here) an execve cannot gain any back, so the bounding set need not be walked."""
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.capset(*_CAP_ARGS)



def apply_limits(limits: dict) -> None:
    """The job's rlimits (CPU seconds get one second of grace before SIGKILL); no core dumps."""
    pairs = (("cpu_s", resource.RLIMIT_CPU, 1), ("memory_bytes", resource.RLIMIT_AS, 0),
             ("file_bytes", resource.RLIMIT_FSIZE, 0), ("open_files", resource.RLIMIT_NOFILE, 0),
             ("nproc", resource.RLIMIT_NPROC, 0))
    for key, which, extra in pairs:
        value = limits.get(key)
        if value:
            try:
                resource.setrlimit(which, (int(value), int(value) + extra))
            except (ValueError, OSError):
                pass
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_test_process(server, raw: dict, limits: dict, tests, records_w: int, out_w: int, err_w: int,
                     workdir: str) -> None:
    """Become the test process (in a worker slot: pid 1 of its own pid namespace) and run the job. Never
    returns. `server` is the fork server (dispatch.ForkServer): what it probed and installed decides what is
    left to do here; `tests` are the job's compiled tests (tests_compiler.CompiledTests)."""
    if not server.in_slots:  # a slot has done this for itself already
        reset_signals()
    os.dup2(server.devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    if records_w != RECORD_FD:
        os.dup2(records_w, RECORD_FD)
        os.set_inheritable(RECORD_FD, False)  # exec'd programs do not get the verdict channel
    os.closerange(3, RECORD_FD)
    os.closerange(RECORD_FD + 1, 1 << 16)
    if server.in_slots:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # its slot gone: so is this test
    os.setsid()
    try:
        os.chdir(workdir)
    except OSError:
        os.chdir("/")
    drop_capabilities()
    if server.landlock and not landlock_scope():
        os._exit(71)
    apply_limits(limits)
    if server.seccomp and not server.slot_filter:  # a slot's part, or the base part, may be in force already
        seccomp.install(*(("test",) if server.base_filter else ("base", "test")))
    job = Job(raw, tests)  # the solution is compiled here, under the limits, never in the fork server
    if job.early is not None:
        key = os.urandom(16).hex().encode()
        hello = json.dumps({"early": job.early}).encode()
        os.write(RECORD_FD, b"HELLO|" + key + b"|" + hello + b"\n")
        os._exit(0)
    server.harness.run(job)

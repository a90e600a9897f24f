"""The kernel interface the inside modules share: libc, system-call constants, clone(2) into new
namespaces, the verdict descriptor's number, and small helpers for descriptors and throwaway probes."""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal

import _signal

def _record_fd() -> int:
    """The test process's verdict descriptor: 1023, far above what any program it execs can open (its
    RLIMIT_NOFILE is 64 by default), because the seccomp filter refuses closing or replacing this number for
    good, in exec'd programs too (a dynamic loader that got fd 3 and could not close it would fail). Raises
    this process's soft limit to reach it where the hard limit allows; 3 where it does not."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1024 and (hard == resource.RLIM_INFINITY or hard >= 1024):
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        soft = 1024
    return 1023 if soft == resource.RLIM_INFINITY or soft >= 1024 else 3


RECORD_FD = _record_fd()

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_SET_CHILD_SUBREAPER, PR_SET_SECCOMP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 36, 22, 47, 4
SECCOMP_MODE_FILTER = 2

libc = ctypes.CDLL(None, use_errno=True)

# A worker slot lives in a user and mount namespace of its own; each test it starts gets a pid namespace of its
# own (SysV IPC: refused by the seccomp filter).
SLOT_NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS
TEST_NAMESPACES = CLONE_NEWPID
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)
_SIGNALS_TO_RESET = (int(signal.SIGCHLD),)  # the fork server's own handler; the rest stay as Python sets them


def clone(flags: int) -> int:
    """fork(), but the child starts in the new namespaces `flags` names.

    A raw clone(2) with os.fork()'s interpreter bookkeeping around it (PyOS_BeforeFork and friends run the
    same at-fork hooks os.fork runs). glibc >= 2.34 uses the kernel's tid for signals to self, so the
    stale cached tid in the child is harmless."""
    if _SYS_CLONE is None:
        raise OSError(errno.ENOSYS, "clone with namespaces is not implemented for this architecture")
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    zero = ctypes.c_long(0)
    pid = libc.syscall(ctypes.c_long(_SYS_CLONE), ctypes.c_long(flags | signal.SIGCHLD), zero, zero, zero, zero)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    error = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(error, os.strerror(error))
    return pid


def reset_signals() -> None:
    """In a process forked from the fork server: no wake-up descriptor, no SIGCHLD handler of the server's."""
    _signal.set_wakeup_fd(-1)
    for sig in _SIGNALS_TO_RESET:
        _signal.signal(sig, _signal.SIG_DFL)


def probe_in_child(action) -> bool:
    """Try `action` in a throwaway child (namespaces and seccomp cannot be undone in this process)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if action() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)



def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def close_all_but(keep) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 16)



def drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass

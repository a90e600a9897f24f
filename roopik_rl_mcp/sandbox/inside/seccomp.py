"""The seccomp filter: no network sockets but Unix ones, no new user namespaces, no SysV IPC or POSIX message
queues, no debugging or kernel-memory interfaces, and nobody closes or replaces the verdict descriptor.

Classic BPF, x86_64 and aarch64 (elsewhere: no filter, and the sandbox's hello says so). In three parts,
because installing a filter costs in proportion to its length and a test process pays for what it installs
(see `_program`)."""

from __future__ import annotations

import ctypes
import errno
import os

from .kernel import CLONE_NEWUSER, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, RECORD_FD, SECCOMP_MODE_FILTER, libc

_SYSCALLS = {
    "x86_64": dict(arch=0xC000003E, x32=True, dup2=33, dup3=292, close=3, close_range=436, socket=41, socketpair=53,
                   clone=56, clone3=435, unshare=272, setns=308, io_uring_setup=425, process_vm_readv=310,
                   process_vm_writev=311, ptrace=101, pidfd_getfd=438, bpf=321, perf_event_open=298,
                   userfaultfd=323, keyctl=250, add_key=248, request_key=249, kexec_load=246,
                   open_by_handle_at=304, mount=165, umount2=166, pivot_root=155, chroot=161, shmget=29, shmat=30,
                   shmctl=31, semget=64, semop=65, semctl=66, semtimedop=220, msgget=68, msgsnd=69, msgrcv=70,
                   msgctl=71, mq_open=240, mq_unlink=241),
    "aarch64": dict(arch=0xC00000B7, x32=False, dup2=None, dup3=24, close=57, close_range=436, socket=198,
                    socketpair=199, clone=220, clone3=435, unshare=97, setns=268, io_uring_setup=425,
                    process_vm_readv=270, process_vm_writev=271, ptrace=117, pidfd_getfd=438, bpf=280,
                    perf_event_open=241, userfaultfd=282, keyctl=219, add_key=217, request_key=218,
                    kexec_load=104, open_by_handle_at=265, mount=40, umount2=39, pivot_root=41, chroot=51, shmget=194,
                    shmat=196, shmctl=195, semget=190, semop=193, semctl=191, semtimedop=192, msgget=186,
                    msgsnd=189, msgrcv=188, msgctl=187, mq_open=180, mq_unlink=181),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _program(part: str):
    """A classic-BPF filter as a ctypes sock_fprog, or None on an architecture we do not know.

    Two parts, because installing a filter costs in proportion to its length (the kernel converts and
    compiles it) and a test process pays for what it installs: the `base` part holds what the fork server
    itself never needs and is installed once in it (test processes inherit it); the `test` part holds
    what the fork server needs for making tests (new user namespaces, mounts, any descriptor) and is
    installed by each test process after its set-up. With worker slots, each slot installs the `slot` part
    (the `test` part less the rules on mounts, which the slot makes for its tests) once, and its tests
    inherit it: they have no capabilities to mount with, nor a way to get any."""
    table = _SYSCALLS.get(os.uname().machine)
    if table is None:
        return None
    ld, jeq, jgt, jge, jset, ret = 0x20, 0x15, 0x25, 0x35, 0x45, 0x06
    allow = 0x7FFF0000

    def deny(code):
        return 0x00050000 | code

    def arg(i):
        return 16 + 8 * i  # low 32 bits of args[i] (little endian)

    prog = [(ld, 0, 0, 4), (jeq, 1, 0, table["arch"]), (ret, 0, 0, deny(errno.EPERM)), (ld, 0, 0, 0)]
    if table["x32"]:
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, deny(errno.EPERM))]

    def rule(nr, block):
        if nr is not None:
            prog.append((jeq, 0, len(block), nr))
            prog.extend(block)

    eperm = deny(errno.EPERM)
    if part in ("test", "slot"):
        def fd_block(i):
            return [(ld, 0, 0, arg(i)), (jeq, 0, 1, RECORD_FD), (ret, 0, 0, eperm), (ret, 0, 0, allow)]

        rule(table["dup2"], fd_block(1))
        rule(table["dup3"], fd_block(1))
        rule(table["close"], fd_block(0))
        rule(table["close_range"], [(ld, 0, 0, arg(0)), (jgt, 3, 0, RECORD_FD), (ld, 0, 0, arg(1)),
                                    (jge, 0, 1, RECORD_FD), (ret, 0, 0, eperm), (ret, 0, 0, allow)])
        no_userns = [(ld, 0, 0, arg(0)), (jset, 0, 1, CLONE_NEWUSER), (ret, 0, 0, eperm), (ret, 0, 0, allow)]
        rule(table["clone"], no_userns)
        rule(table["unshare"], no_userns)
        if part == "test":  # a worker slot mounts each test's directories; its tests have no capabilities
            for name in ("mount", "umount2"):
                rule(table[name], [(ret, 0, 0, eperm)])
    else:
        unix_only = [(ld, 0, 0, arg(0)), (jeq, 0, 1, 1), (ret, 0, 0, allow), (ret, 0, 0, deny(errno.EAFNOSUPPORT))]
        rule(table["socket"], unix_only)
        rule(table["socketpair"], unix_only)
        rule(table["clone3"], [(ret, 0, 0, deny(errno.ENOSYS))])  # its flags are out of reach; glibc falls back
        for name in ("setns", "io_uring_setup", "process_vm_readv", "process_vm_writev", "ptrace", "pidfd_getfd",
                     "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "kexec_load",
                     "open_by_handle_at", "pivot_root", "chroot",
                     # SysV IPC and POSIX message queues: shared by every test of a batch (one IPC namespace)
                     "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "semtimedop", "msgget", "msgsnd",
                     "msgrcv", "msgctl", "mq_open", "mq_unlink"):
            rule(table[name], [(ret, 0, 0, eperm)])
    prog.append((ret, 0, 0, allow))
    array = (_SockFilter * len(prog))(*[_SockFilter(*p) for p in prog])
    return _SockFprog(len(prog), array), array


_PROGRAMS = {part: _program(part) for part in ("base", "test", "slot")}
_PROGRAM_REFS = {part: ctypes.byref(prog[0]) for part, prog in _PROGRAMS.items() if prog is not None}


def install(*parts: str) -> bool:
    """Install the named parts in this process (with no_new_privs, which seccomp needs): for good, and
    inherited by every child. False if this architecture has no table or the kernel refused."""
    if not _PROGRAM_REFS or libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # an architecture we do not know
        return False
    return all(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, _PROGRAM_REFS[part], 0, 0) == 0 for part in parts)

"""A worker slot's namespaces and the directories its tests see.

A slot is a process cloned into a user and mount namespace of its own (`enter_slot_namespaces`: its uid map,
the server's home and data directory hidden). It holds the tests' directories (`TestDirs`: a private /tmp with
the work dir, scratch dirs, a devpts instance, an empty /proc), checks them after every test and mounts afresh
what a test changed. `probe_namespaces` says whether the kernel allows all of this here."""

from __future__ import annotations

import errno
import os
import stat

from .kernel import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT,
                     PR_SET_DUMPABLE, SLOT_NAMESPACES, TEST_NAMESPACES, clone, libc, write_file)


def _mount_tmpfs(target: str, options: str, flags: int = MS_NOSUID | MS_NODEV) -> bool:
    return libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags, options.encode()) == 0


def _bind(source: str, target: str, readonly: bool = True) -> bool:
    if libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None) != 0:
        return False
    if readonly:
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        libc.mount(None, target.encode(), None, flags, None)
    return True



def _tmpfs_keeping(target: str, options: str, kept: list) -> bool:
    """An empty tmpfs over `target`, with the directories `kept` (path, O_PATH handle) below it bound back in
    (read-only). The handles were opened before: the tmpfs hides the paths."""
    ok = _mount_tmpfs(target, options)
    for path, handle in kept:
        if path.startswith(target + "/"):
            os.makedirs(path, exist_ok=True)
            ok &= _bind(f"/proc/self/fd/{handle}", path)
    return ok


def kept_handles(cfg: dict) -> list:
    """(path, O_PATH handle) of the directories that stay visible inside hidden or per-test directories:
    the interpreter's and the virtual environment's, where they live under /tmp or the server's home."""
    return [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in cfg.get("expose") or () if os.path.isdir(p)]


def enter_slot_namespaces(cfg: dict, uid: int, gid: int, kept: list) -> bool:
    """In a freshly cloned worker slot (its own user and mount namespace): map its uid, and hide the server's
    home and data directory for good. False if not possible."""
    # A non-dumpable process cannot write its own /proc/self/*_map; dumpable again only for this step.
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} {uid} 1")
        write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError:
        return False
    finally:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    workdir = cfg["workdir"]
    ok = True
    # The server's home and data directory: empty, read-only; interpreter directories inside stay visible.
    for hidden in cfg.get("hide") or ():
        if not os.path.isdir(hidden) or workdir == hidden or workdir.startswith(hidden + "/"):
            continue
        ok &= _tmpfs_keeping(hidden, "size=64k,mode=0755", kept)
        libc.mount(None, hidden.encode(), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)
    return bool(ok)


class TestDirs:
    """A worker slot's directories for its tests: a private /tmp holding the work dir, scratch dirs, a devpts
    instance, an empty /proc. Mounted once per slot and checked after every test; a directory a test left
    changed (an entry, a mode, an extended attribute or ACL) is mounted afresh before the next test.

    Why not mount them all per test: mounting and unmounting five file systems cost a short test about a sixth
    of its whole CPU time, and most tests write nothing; the check is one read of an inotify queue, and a few
    system calls a directory when that queue holds anything. What the check does not restore (timestamps,
    inode numbers) only carries a covert channel, like timing (docs/THREAT_MODEL.md).
    The empty /proc is mounted read-only: a test can change nothing in it."""

    def __init__(self, cfg: dict, kept: list) -> None:
        self.kept, self.workdir = kept, cfg["workdir"]
        self.scratch = [p for p in cfg.get("scratch", ("/dev/shm", "/var/tmp")) if os.path.isdir(p)]
        self.size = 64 << 20
        self.units = ["/tmp"] + ([] if self.workdir.startswith("/tmp/") else [self.workdir]) + self.scratch
        if os.path.isdir("/dev/pts"):
            self.units.append("/dev/pts")
        self.mounted: list[str] = []  # what is mounted now, in order ("/proc" last)
        self.baseline: dict[str, dict] = {}  # unit -> {directory it holds: how it looked when mounted}
        # Binding the kept interpreter dirs back goes through /proc/self/fd: /proc stays uncovered meanwhile.
        self.needs_proc = any(path.startswith("/tmp/") for path, _ in kept)
        self.watch = _DirectoryWatch.open()  # None where inotify is unavailable: every check compares

    def prepare(self, size: int | None = None) -> bool:
        """Mount every unit afresh (at slot start, and when a test asks for another /tmp size)."""
        self.size = int(size or (64 << 20))
        return self.renew(list(self.units))

    def fit(self, size: int | None) -> bool:
        """Before a test: its /tmp size, if it differs from the mounted one."""
        size = int(size or (64 << 20))
        if size == self.size:
            return True
        self.size = size
        return self.renew([unit for unit in self.units if unit in ("/tmp", self.workdir)])

    def check(self) -> list[str]:
        """After a test: the units it left changed. No inotify event on any of their directories since the
        last check means none changed (most tests); otherwise each is compared with how it looked."""
        if self.watch is not None and self.watch.quiet():
            return []
        return [unit for unit in self.units
                if any(_looks(path) != seen for path, seen in self.baseline[unit].items())]

    def renew(self, units: list[str]) -> bool:
        """Mount `units` afresh (whatever was there detached). False if that failed."""
        ok = True
        uncover = self.needs_proc and "/tmp" in units and "/proc" in self.mounted
        for target in (["/proc"] if uncover else []) + units:
            if target in self.mounted:
                ok &= libc.umount2(target.encode(), MNT_DETACH) == 0
                self.mounted.remove(target)
        for unit in units:
            done = self._mount(unit)
            if done:
                self.mounted.append(unit)
                self.baseline[unit] = {path: _looks(path) for path in self._directories(unit)}
                if self.watch is not None and not all(self.watch.add(path) for path in self.baseline[unit]):
                    self.watch = None  # a directory it cannot watch: from now on every check compares
            ok &= done
        if "/proc" not in self.mounted:
            # No /proc at all: nothing to reopen (/proc/self/fd), read (/proc/self/mem) or look at.
            if _mount_tmpfs("/proc", "size=4k,mode=0555", MS_NOSUID | MS_NODEV | MS_RDONLY):
                self.mounted.append("/proc")
            else:
                ok = False
        return bool(ok)

    def _mount(self, unit: str) -> bool:
        if unit == "/tmp":
            if not _tmpfs_keeping("/tmp", f"size={self.size},mode=1777", self.kept):
                return False
            if self.workdir.startswith("/tmp/"):  # hidden by the fresh /tmp: recreate it there
                os.makedirs(self.workdir, mode=0o700, exist_ok=True)
            return True
        if unit == self.workdir:
            return _mount_tmpfs(unit, f"size={self.size},mode=0700")
        if unit == "/dev/pts":
            # Pseudo-terminals of its own: a fresh devpts instance (/dev/ptmx allocates from the /dev/pts beside
            # it), so that concurrent tests cannot open each other's ptys, nor reach the host's terminals.
            return libc.mount(b"devpts", b"/dev/pts", b"devpts", MS_NOSUID | MS_NOEXEC,
                               b"newinstance,ptmxmode=0666,mode=0620") == 0
        return _mount_tmpfs(unit, "size=1m,mode=1777")  # scratch space of its own

    def _directories(self, unit: str) -> list[str]:
        """What of `unit` a test could change: the mount's root; on /dev/pts the ptmx node; on /tmp the
        directories leading to the work dir and the kept interpreter dirs (those are read-only binds)."""
        found = [unit] + (["/dev/pts/ptmx"] if unit == "/dev/pts" else [])
        if unit == "/tmp":
            for path in [self.workdir] + [path for path, _ in self.kept]:
                parts = path.split("/")
                for depth in range(3, len(parts) + 1):
                    directory = "/".join(parts[:depth])
                    if directory.startswith("/tmp/") and directory not in found and not self._is_kept(directory):
                        found.append(directory)
        return found

    def _is_kept(self, path: str) -> bool:
        return any(path == kept or path.startswith(kept + "/") for kept, _ in self.kept)


class _DirectoryWatch:
    """inotify on a worker slot's test directories: any change `_looks` can tell (an entry made, removed or
    renamed; a mode, owner, extended attribute or ACL set; the directory itself gone) queues an event. It only
    says whether anything happened: what changed, the full comparison decides. Events from the slot's own
    remounts (watches of detached mounts ending) cost one comparison that finds nothing."""

    MASK = 0x4 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x02000000  # ATTRIB MOVED_FROM/TO CREATE DELETE
    #                                                                       DELETE_SELF MOVE_SELF DONT_FOLLOW

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls) -> "_DirectoryWatch | None":
        try:
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except AttributeError:  # a C library without inotify
            return None
        return cls(fd) if fd >= 0 else None

    def add(self, path: str) -> bool:
        return libc.inotify_add_watch(self.fd, path.encode(), self.MASK) >= 0

    def quiet(self) -> bool:
        """True if no event came since the last call (the queue is emptied either way)."""
        quiet = True
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return quiet
            except BlockingIOError:
                return quiet
            except OSError:
                return False
            quiet = False


def _looks(path: str) -> tuple | None:
    """How a directory (or node) looks, as far as a later test could tell: its identity, type, mode, owner,
    entries, extended attributes (ACLs included). None if it is gone or unreadable."""
    try:
        st = os.lstat(path)
        entries = sorted(os.listdir(path)) if stat.S_ISDIR(st.st_mode) else None
        try:
            attrs = sorted(os.listxattr(path, follow_symlinks=False))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            attrs = []
        return st.st_ino, st.st_mode, st.st_uid, st.st_gid, entries, attrs
    except OSError:
        return None


def probe_namespaces(cfg: dict) -> bool:
    """Can this sandbox run worker slots? Tried in a throwaway slot that starts one empty test."""
    uid, gid = os.getuid(), os.getgid()
    try:
        pid = clone(SLOT_NAMESPACES)
    except OSError:
        return False
    if pid == 0:
        try:
            kept = kept_handles(cfg)
            dirs = TestDirs(cfg, kept)
            ok = enter_slot_namespaces(cfg, uid, gid, kept) and dirs.prepare()
            if ok:
                test = clone(TEST_NAMESPACES)
                if test == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                _, status = os.waitpid(test, 0)
                ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and not dirs.check()
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

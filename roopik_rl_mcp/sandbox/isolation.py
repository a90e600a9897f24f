"""The isolation the sandbox runs under: probed once, strongest first, and the command that builds it.

Levels, strongest first:

  bwrap      bubblewrap: new user, pid, net, ipc, uts (and cgroup) namespaces, --die-with-parent,
             --new-session, no capabilities, read-only /usr and interpreter, nothing of the server's home
             or data, private tmpfs /tmp and work dir, no network at all. As root the fork server runs as
             uid 65534 (setpriv), so process limits apply.
  netns+uid  (root, no usable bubblewrap) uid 65534 via setpriv, plus `unshare` user, net, pid, mount,
             ipc and uts namespaces; the server's home and data directory are hidden behind empty tmpfs.
  netns      (not root) the same namespaces under the server's own uid.
  uid        (root, no user namespaces) uid 65534 via setpriv; network cut by the seccomp filter only.
  process    nothing but rlimits, the seccomp filter and a scrubbed environment.

Inside every level the fork server runs its tests in worker slots (a user and mount namespace per worker, a
pid namespace per test; /tmp, /dev/shm, /dev/pts checked after each test and mounted afresh when changed; an
empty /proc) when the kernel allows it (SysV IPC and message queues are refused by its seccomp filter instead
of a per-test IPC namespace): see the `inside` package. `describe()` reports what is actually in force.
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import shutil
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from roopik_rl_mcp.sandbox import bundle, oneshot
from roopik_rl_mcp.sandbox.wire import Launch

logger = logging.getLogger(__name__)

LEVELS = ("bwrap", "netns+uid", "netns", "uid", "process")
SANDBOX_UID = 65534
SANDBOX_GID = 65534
WORKDIR_IN_SANDBOX = "/tmp/sandbox"
FORCE_ENV = "ROOPIK_SANDBOX_ISOLATION"
"""Set to one of LEVELS to use that level (and fail loudly if it does not work here)."""

MEANING = {
    "bwrap": "bubblewrap: own user/pid/net/ipc/uts namespaces, no capabilities, read-only system, no home or "
             "data dir, private /tmp, no network (loopback included)",
    "netns+uid": "uid 65534 + own user/net/pid/mount namespaces; home and data dir hidden; no network",
    "netns": "own user/net/pid/mount namespaces under the server's uid; no network",
    "uid": "uid 65534, no namespaces: network cut by seccomp only, filesystem protected by permissions only",
    "process": "rlimits + seccomp + scrubbed environment only: the code runs as the server's user",
}


@dataclass
class Isolation:
    level: str
    hello: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def pertest_namespaces(self) -> bool:
        return bool(self.hello.get("pertest_namespaces"))

    def warning(self) -> str:
        """One line when this is weaker than bwrap ("" otherwise): why bwrap is not in force, and the fix."""
        if self.level == "bwrap":
            return ""
        why = next((note.removeprefix("bwrap unavailable: ")[:400] for note in self.notes if note.startswith("bwrap ")),
                   f"{FORCE_ENV}={os.environ[FORCE_ENV]} forces it" if os.environ.get(FORCE_ENV) else
                   unavailable_because("bwrap") or "bwrap was not tried")
        return f"sandbox isolation {self.level} is weaker than bwrap: {why}"

    def describe(self) -> str:
        parts = [MEANING.get(self.level, self.level)]
        parts.append("per-test pid namespace, empty /tmp, /dev/shm, /dev/pts (mounted afresh when a test changed "
                     "them), empty /proc (worker slots)"
                     if self.pertest_namespaces else
                     "NO per-test namespaces (tests run one at a time, leftovers swept)")
        parts.append("seccomp filter" if self.hello.get("seccomp") else "NO seccomp filter")
        parts.append("Landlock scope per test (abstract Unix sockets, signals)" if self.hello.get("landlock") else
                     "NO Landlock scope (kernel before 6.12): concurrent tests could talk over abstract Unix sockets")
        uid = self.hello.get("uid")
        if uid is not None:
            parts.append(f"code runs as uid {self.hello.get('outer_uid', uid)}")
        return "; ".join(parts)


def _is_root() -> bool:
    return os.geteuid() == 0


def _reachable_by_sandbox_uid(path: str) -> bool:
    """Could uid 65534 (no groups) traverse to `path` and read it? Checked by mode bits, as root cannot ask."""
    current = Path("/")
    parts = Path(path).resolve().parts[1:]
    for index, part in enumerate(parts):
        current = current / part
        try:
            info = os.stat(current)
        except OSError:
            return False
        mode = info.st_mode
        if index < len(parts) - 1 or stat.S_ISDIR(mode):
            needed = stat.S_IXOTH | (stat.S_IROTH if index == len(parts) - 1 else 0)
            if info.st_uid == SANDBOX_UID:
                needed = (stat.S_IXUSR | (stat.S_IRUSR if index == len(parts) - 1 else 0))
            if mode & needed != needed:
                return False
    return True


def interpreter_paths() -> list[str]:
    """Directories the sandboxed interpreter needs, read-only: its install prefix and the venv."""
    paths = []
    for prefix in (sys.base_prefix, sys.prefix, str(Path(sys.executable).resolve().parent.parent)):
        prefix = str(Path(prefix).resolve())
        if prefix.startswith("/usr") or any(prefix == p or prefix.startswith(p + "/") for p in paths):
            continue
        paths = [p for p in paths if not p.startswith(prefix + "/")] + [prefix]
    return paths


def hidden_paths() -> list[str]:
    """The server's home and data directory: never visible to sandboxed code."""
    home = os.path.expanduser("~")
    data = os.environ.get("ROOPIK_RL_HOME") or os.path.join(home, ".roopik-rl")
    out: list[str] = []
    for path in (home, os.path.expanduser(data)):
        path = str(Path(path).resolve())
        if path in ("/", "") or not os.path.isdir(path):
            continue
        if any(path == p or path.startswith(p + "/") for p in out):
            continue  # already hidden with its parent
        out = [p for p in out if not p.startswith(path + "/")] + [path]
    return out


class _Stage:
    """Empty mount points, created once, for binding paths uid 65534 cannot reach (e.g. under /root)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.root: str | None = None
        self.count = 0

    def directory(self) -> str:
        with self.lock:
            if self.root is None:
                self.root = tempfile.mkdtemp(prefix="roopik-stage-")
                os.chmod(self.root, 0o711)
                atexit.register(shutil.rmtree, self.root, True)
            self.count += 1
            target = os.path.join(self.root, f"m{self.count}")
            os.mkdir(target, 0o755)
            return target


_STAGE = _Stage()
_STAGED: dict[str, str] = {}


def _staged(path: str) -> str:
    if path not in _STAGED:
        _STAGED[path] = _STAGE.directory()
    return _STAGED[path]


def _bwrap_argv(python: list[str]) -> list[str]:
    prep: list[str] = []
    binds: list[tuple[str, str]] = []
    for path in interpreter_paths():
        source = path
        if _is_root() and not _reachable_by_sandbox_uid(path):
            source = _staged(path)
            prep.append(f"mount --bind {shlex.quote(path)} {shlex.quote(source)}")
        binds.append((source, path))
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", "--tmpfs", "/tmp"]
    # After the tmpfs: an interpreter or venv that lives under /tmp (a CI clone, say) stays visible.
    for source, target in binds:
        argv += ["--ro-bind", source, target]
    argv += ["--dir", WORKDIR_IN_SANDBOX, "--remount-ro", "/", "--chdir", WORKDIR_IN_SANDBOX, "--clearenv"]
    for key, value in sandbox_env(WORKDIR_IN_SANDBOX).items():
        argv += ["--setenv", key, value]
    argv += ["--", *python]
    if _is_root():
        argv = [*_setpriv(), *argv]
    return _with_prep(prep, argv)


def _setpriv() -> list[str]:
    return ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_GID}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--"]


def _with_prep(prep: list[str], argv: list[str]) -> list[str]:
    """As root, run `prep` (mounts) in a private mount namespace first, then exec the rest."""
    if not prep:
        return argv
    script = "set -e\n" + "\n".join(prep) + '\nexec "$@"\n'
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", *argv]


def _unshare_argv(python: list[str], as_nobody: bool) -> list[str]:
    prep: list[str] = []
    if as_nobody:
        hidden = hidden_paths()
        exposed = [p for p in interpreter_paths() if not _reachable_by_sandbox_uid(p)
                   or any(p == h or p.startswith(h + "/") for h in hidden)]
        for path in exposed:
            prep.append(f"mount --bind {shlex.quote(path)} {shlex.quote(_staged(path))}")
        for path in hidden:
            if os.path.isdir(path):
                prep.append(f"mount -t tmpfs -o mode=0755,size=64k tmpfs {shlex.quote(path)}")
        for path in exposed:
            prep.append(f"mkdir -p {shlex.quote(path)}")
            prep.append(f"mount --bind {shlex.quote(_staged(path))} {shlex.quote(path)}")
            prep.append(f"mount -o remount,bind,ro {shlex.quote(path)}")
    argv = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--mount",
            "--mount-proc", "--ipc", "--uts", "--", *python]
    if as_nobody:
        argv = [*_setpriv(), *argv]
    return _with_prep(prep, argv)


def _uid_argv(python: list[str]) -> list[str]:
    hidden = hidden_paths()
    exposed = [p for p in interpreter_paths() if not _reachable_by_sandbox_uid(p)
               or any(p == h or p.startswith(h + "/") for h in hidden)]
    prep = [f"mount --bind {shlex.quote(p)} {shlex.quote(_staged(p))}" for p in exposed]
    prep += [f"mount -t tmpfs -o mode=0755,size=64k tmpfs {shlex.quote(p)}" for p in hidden if os.path.isdir(p)]
    for path in exposed:
        prep += [f"mkdir -p {shlex.quote(path)}", f"mount --bind {shlex.quote(_staged(path))} {shlex.quote(path)}",
                 f"mount -o remount,bind,ro {shlex.quote(path)}"]
    return _with_prep(prep, [*_setpriv(), *python])


def sandbox_env(home: str) -> dict[str, str]:
    """A minimal environment: nothing from the server's (API keys, tokens) reaches the code."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "USER": "sandbox",  # getpass.getuser() and friends: the sandbox's uid has no passwd entry in it
        "LOGNAME": "sandbox",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
    }


# The interpreter starts without `site` (-S: .pth processing costs ~25 ms) and adds the venv's
# site-packages itself; the inside modules arrive as one marshalled payload on stdin (bundle.py: compiled once
# per server process, not on every sandbox start), followed by the config line and the jobs.
_STUB = """import marshal, os, site, sys
site.setquit(), site.setcopyright(), site.sethelper()  # the builtins `site` would add (exit, quit, help...)
sys.path.extend({paths!r})
size = int(sys.argv[1])
data = b""
while len(data) < size:
    chunk = os.read(0, size - len(data))
    if not chunk:
        raise SystemExit("roopik sandbox: truncated payload")
    data += chunk
exec(marshal.loads(data))
"""


def site_packages() -> list[str]:
    """The venv's site-packages by their real paths: the sandbox binds real paths, not symlinks to them."""
    import site

    return [os.path.realpath(p) for p in site.getsitepackages() if os.path.isdir(p)]


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def interpreter() -> str:
    """The interpreter to exec in the sandbox, by a path that exists there.

    bwrap binds the venv at its real path, so a venv reached through a symlink (`.venv -> /elsewhere/.venv`)
    is not there under the symlinked name. Its directory is resolved; the last link (the venv's
    bin/python -> the base interpreter) is kept where each hop stays in bound directories, so that the
    interpreter still finds the venv's pyvenv.cfg; otherwise the fully resolved binary is used."""
    path = os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))
    roots = ["/usr", *interpreter_paths()]
    hop = path
    for _ in range(40):
        directory = os.path.dirname(hop)
        if os.path.realpath(directory) != directory or not _inside(directory, roots):
            return os.path.realpath(path)
        if not os.path.islink(hop):
            return path
        hop = os.path.normpath(os.path.join(directory, os.readlink(hop)))
    return os.path.realpath(path)


def python_command() -> list[str]:
    stub = _STUB.format(paths=site_packages())
    return [interpreter(), "-I", "-S", "-X", "utf8", "-B", "-c", stub, str(len(bundle.payload()))]


PACKAGES = {"bwrap": "bubblewrap", "unshare": "util-linux", "setpriv": "util-linux"}


def unavailable_because(level: str) -> str:
    """Why `level` cannot even be tried here ("" when it can): the platform, the uid, or a missing tool."""
    if not sys.platform.startswith("linux"):
        return "" if level == "process" else "needs Linux"
    root = _is_root()
    if level in ("netns+uid", "uid") and not root:
        return "needs root (to switch to uid 65534)"
    if level == "netns" and root:
        return "not used as root (user namespaces would map to root: netns+uid instead)"
    need = {"bwrap": ["bwrap"] + (["setpriv", "unshare"] if root else []),
            "netns+uid": ["unshare", "setpriv"], "netns": ["unshare"], "uid": ["setpriv", "unshare"],
            "process": []}[level]
    missing = [tool for tool in need if not shutil.which(tool)]
    if not missing:
        return ""
    packages = " ".join(dict.fromkeys(PACKAGES[tool] for tool in missing))
    return f"{', '.join(missing)} not installed (fix: apt-get install {packages}, or bash scripts/setup-system.sh)"


def available(level: str) -> bool:
    return not unavailable_because(level)


def fix_for(why: str) -> str:
    """A fix the user can apply for a probe failure, when the failure says what it is ("" otherwise)."""
    text = why.lower()
    if "execvp" in text:
        return ("the interpreter's path is not there inside the sandbox (reached through a symlink, or through a "
                "directory the sandbox's uid cannot enter): run the server from a virtualenv by its real path")
    if "uid map" in text or "namespace" in text:
        return ("user namespaces are refused: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), "
                "kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu), or --privileged / a seccomp profile "
                "that allows unshare (containers)")
    return ""


def levels_here() -> dict[str, str]:
    """Every level, probed: "" for those that work on this machine, otherwise why not (`make test-levels`)."""
    out = {}
    for level in LEVELS:
        why = unavailable_because(level)
        if not why:
            ok, _, failure = oneshot.probe(level, lambda: launch(level))
            why = "" if ok else f"probe failed: {failure[:300]}"
        out[level] = why
    return out


def launch(level: str) -> Launch:
    python = python_command()
    # `expose`: interpreter dirs that the fork server's per-test mounts (hidden dirs, a fresh /tmp) keep.
    config: dict = {"hide": [], "workdir": WORKDIR_IN_SANDBOX, "expose": interpreter_paths(),
                    # bwrap's /dev is read-only: /dev/shm gets a tmpfs of each test's own, since multiprocessing's
                    # locks, queues and pools need it (POSIX semaphores); bwrap's root has no /var
                    "scratch": ["/dev/shm"]}
    host_workdir = None
    if level == "bwrap":
        argv = _bwrap_argv(python)
        cwd = "/"
        env = sandbox_env(WORKDIR_IN_SANDBOX)
    else:
        host_workdir = tempfile.mkdtemp(prefix="roopik-sbx-")
        if _is_root() and level in ("netns+uid", "uid"):
            os.chown(host_workdir, SANDBOX_UID, SANDBOX_GID)
        os.chmod(host_workdir, 0o700)
        config["workdir"] = host_workdir
        config["hide"] = hidden_paths()
        config["scratch"] = ["/dev/shm", "/var/tmp"]
        config["expose"] = interpreter_paths()
        cwd = host_workdir
        env = sandbox_env(host_workdir)
        if level == "netns+uid":
            argv = _unshare_argv(python, as_nobody=True)
        elif level == "netns":
            argv = _unshare_argv(python, as_nobody=False)
        elif level == "uid":
            argv = _uid_argv(python)
        else:
            argv = python
    return Launch(argv=argv, env=env, cwd=cwd, config=config, host_workdir=host_workdir)


_LOCK = threading.Lock()
_CURRENT: Isolation | None = None


def current() -> Isolation:
    """The strongest level that actually works here (probed by running a tiny test), cached."""
    global _CURRENT
    with _LOCK:
        if _CURRENT is None:
            _CURRENT = _probe_levels()
        return _CURRENT


def reset() -> None:
    """Forget the probed level (tests; or after installing bubblewrap)."""
    global _CURRENT
    with _LOCK:
        _CURRENT = None


def _probe_levels() -> Isolation:
    forced = os.environ.get(FORCE_ENV)
    if forced and forced not in LEVELS:
        raise ValueError(f"{FORCE_ENV}={forced!r}: expected one of {', '.join(LEVELS)}")
    notes = []
    if forced:
        candidates = [forced]
    else:
        candidates = [level for level in LEVELS if available(level)]
        if "bwrap" not in candidates and sys.platform.startswith("linux"):
            notes.append(f"bwrap unavailable: {unavailable_because('bwrap')}")  # the fix is one install away
            logger.warning("sandbox isolation %s", notes[-1])
    for level in candidates:
        ok, hello, why = oneshot.probe(level, lambda: launch(level))
        if ok:
            if _is_root() and level in ("bwrap", "netns+uid", "uid"):
                hello["outer_uid"] = SANDBOX_UID
            isolation = Isolation(level=level, hello=hello, notes=notes)
            logger.info("sandbox isolation: %s (%s)", level, isolation.describe())
            return isolation
        fix = fix_for(why)
        notes.append(f"{level} unavailable: {why}" + (f" (fix: {fix})" if fix else ""))
        logger.warning("sandbox isolation %s", notes[-1])
    if forced:
        raise RuntimeError(f"{FORCE_ENV}={forced}: that isolation level does not work here: {notes[-1]}")
    return Isolation(level="process", hello={}, notes=notes + ["no level passed its probe"])

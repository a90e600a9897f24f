"""The bubblewrap sandbox the browser and the build worker run in, and the level actually in force.

`bwrap`: own user, pid, network, ipc, uts and cgroup namespaces (no network at all: Playwright talks to
Chromium over its pipe, the build worker over stdin/stdout), --die-with-parent, a read-only /usr and the
few /etc files Chromium needs (fonts), empty tmpfs /tmp and home, nothing of the server's home, data dir
or repository, and uid 65534 (as root: setpriv drops to 65534 before bwrap; otherwise the user namespace
maps the caller to 65534). `process`: bubblewrap is missing or does not work here; the programs run as
the server's user with their own flags only (Chromium with its own renderer sandbox disabled).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping

logger = logging.getLogger(__name__)

FORCE_ENV = "ROOPIK_UI_ISOLATION"
"""`process` turns the sandbox off (tests, machines without user namespaces); `bwrap` fails loudly if it does not work."""
SANDBOX_UID = 65534
HOME_IN_SANDBOX = "/home/sandbox"
_SYSTEM_RO = ("/etc/fonts", "/etc/ld.so.cache", "/var/cache/fontconfig", "/etc/alternatives", "/etc/localtime")


def sandbox_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Nothing from the server's environment (API keys, tokens) reaches the sandboxed program."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME_IN_SANDBOX, "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "XDG_CONFIG_HOME": f"{HOME_IN_SANDBOX}/.config", "XDG_CACHE_HOME": f"{HOME_IN_SANDBOX}/.cache"}
    env.update(extra or {})
    return env


def _setpriv() -> list[str]:
    return ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--"]


def bwrap_argv(argv: list[str], *, ro_paths: Iterable[str] = (), env: Mapping[str, str] | None = None,
               rw_paths: Iterable[str] = (), chdir: str = "/tmp") -> list[str]:
    """`argv` inside bubblewrap, seeing only the system, `ro_paths` (read-only), `rw_paths` (writable: a
    build's output folder) and empty /tmp and home."""
    out = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
           "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            out += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            out += ["--ro-bind", path, path]
    for path in _SYSTEM_RO:
        out += ["--ro-bind-try", path, path]
    out += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm", "--tmpfs", "/tmp",
            "--tmpfs", HOME_IN_SANDBOX]
    for path in ro_paths:  # after the tmpfs mounts: a runtime under /tmp stays visible
        out += ["--ro-bind", path, path]
    for path in rw_paths:
        out += ["--bind", path, path]
    out += ["--chdir", chdir, "--clearenv"]
    for key, value in sandbox_env(env).items():
        out += ["--setenv", key, value]
    out += ["--", *argv]
    if os.geteuid() == 0:
        out = [*_setpriv(), *out]
    return out


_LOCK = threading.Lock()
_LEVELS: dict[tuple[str, ...], tuple[str, str]] = {}


def isolation_for(ro_paths: Iterable[str] = ()) -> tuple[str, str]:
    """("bwrap", "") when a sandboxed program can read `ro_paths`, else ("process", why); probed once per set."""
    key = tuple(sorted(ro_paths))
    with _LOCK:
        if key not in _LEVELS:
            _LEVELS[key] = _probe(key)
        return _LEVELS[key]


def _probe(ro_paths: tuple[str, ...]) -> tuple[str, str]:
    forced = os.environ.get(FORCE_ENV)
    if forced == "process":
        return "process", f"{FORCE_ENV}=process"
    missing = [tool for tool in ("bwrap", *(["setpriv"] if os.geteuid() == 0 else [])) if not shutil.which(tool)]
    why = ""
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install bubblewrap util-linux)"
    else:
        test = " && ".join(f"test -r {p!r}" for p in ro_paths) or "true"
        try:
            done = subprocess.run(bwrap_argv(["/bin/sh", "-c", test], ro_paths=ro_paths), capture_output=True,
                                  timeout=10, text=True)
            if done.returncode == 0:
                return "bwrap", ""
            why = f"bwrap probe failed (exit {done.returncode}): {done.stderr.strip()[:300]}"
        except (OSError, subprocess.TimeoutExpired) as error:
            why = f"bwrap probe failed: {error}"
    if forced == "bwrap":
        raise RuntimeError(f"{FORCE_ENV}=bwrap but bubblewrap does not work here: {why}")
    logger.warning("UI sandbox unavailable, running unsandboxed (isolation 'process'): %s", why)
    return "process", why

"""Where the UI tools live on this machine: the npm runtime (installed by `npm ci`) and Chromium.

Captured code never installs anything: both come from the shared set-up step, and a missing one is a
clear error that says how to install it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from roopik_rl_mcp.errors import UserError

RUNTIME_DIR = Path(__file__).with_name("runtime")
RUNTIME_ENV = "ROOPIK_UI_RUNTIME"
"""Another runtime directory (a package.json + node_modules laid out like ui/runtime)."""
CHROMIUM_ENV = "ROOPIK_CHROMIUM"
"""The Chromium binary to drive (default: Debian's /usr/lib/chromium/chromium, else chromium on PATH)."""
NODE_ENV = "ROOPIK_NODE"
_CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/lib/chromium-browser/chromium-browser")
REQUIRED_MODULES = ("esbuild", "react", "react-dom", "tailwindcss", "@tailwindcss/node", "@tailwindcss/oxide")


class UIRuntimeMissing(UserError):
    """The UI tools are not installed here; the message says which command installs them."""

    def __init__(self, problem: str) -> None:
        super().__init__("language", problem)


def runtime_dir() -> Path:
    """The directory holding package.json, package-lock.json, worker.mjs and (after `npm ci`) node_modules."""
    return Path(os.environ.get(RUNTIME_ENV) or RUNTIME_DIR).resolve()


def node_binary() -> str | None:
    return os.environ.get(NODE_ENV) or shutil.which("node")


def runtime_problem() -> str | None:
    """Why UI builds cannot run here, or None when node and the runtime's node_modules are in place."""
    root = runtime_dir()
    if node_binary() is None:
        return "Node.js is not installed (UI builds need node >= 18): run `make setup` (apt-get install nodejs npm)"
    missing = [name for name in REQUIRED_MODULES if not (root / "node_modules" / name / "package.json").is_file()]
    if missing:
        return (f"the UI runtime's npm packages are not installed ({', '.join(missing)} missing): "
                f"run `make setup`, or `npm ci` in {root}")
    return None


def ensure_runtime() -> Path:
    """The runtime directory, or UIRuntimeMissing naming the command that installs it."""
    problem = runtime_problem()
    if problem:
        raise UIRuntimeMissing(problem)
    return runtime_dir()


def chromium_path() -> str | None:
    """The Chromium binary itself (not Debian's /usr/bin/chromium shell launcher), or None."""
    forced = os.environ.get(CHROMIUM_ENV)
    if forced:
        return forced if os.access(forced, os.X_OK) else None
    for path in _CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str:
    path = chromium_path()
    if path is None:
        raise UIRuntimeMissing("Chromium is not installed: run `make setup` (apt-get install chromium), "
                               f"or set {CHROMIUM_ENV} to a Chromium binary")
    if importlib.util.find_spec("playwright") is None:
        raise UIRuntimeMissing("the playwright Python package is not installed: run `make setup` "
                               "(pip install playwright; never `playwright install`, Chromium comes from apt)")
    return path


def runtime_key() -> str:
    """Changes whenever the installed packages or the worker change (the vendor cache's key)."""
    root = runtime_dir()
    digest = hashlib.sha256()
    for name in ("package-lock.json", "worker.mjs"):
        path = root / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


def vendor_cache_dir() -> Path:
    """Inside node_modules when writable (so `npm ci` clears it), else the user's cache directory."""
    key = runtime_key()
    inside = runtime_dir() / "node_modules" / ".roopik-vendor"
    if os.access(inside.parent, os.W_OK):
        return inside / key
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "roopik-rl" / "ui-vendor" / key

"""A Vite project on disk (the IDE's full apps), built with its own node_modules and served like a component.

The build runs `vite build` from the project's own node_modules inside the same bubblewrap sandbox as the
component build worker: no network, the project read-only (its config is loaded natively, so nothing is
written beside it), only a fresh output folder writable, uid 65534, bounded by the capture's timeout. The
built dist/ is then served from memory on the capture origin and rendered exactly like a component: the
same checks, console, errors, blank detection and screenshots. Errors point at the project's files.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.ui.models import BuildMessage

BUILD_MARGIN_S = 2.0
MAX_DIST_BYTES = 50 * 1024 * 1024
_LOCATION = re.compile(r"─\[\s*(?P<file>[^\]]+?):(?P<line>\d+):(?P<column>\d+)\s*\]")
_PLAIN_LOCATION = re.compile(r"(?P<file>[\w./-]+\.(?:[jt]sx?|css|html|vue|svelte)):(?P<line>\d+):(?P<column>\d+)")


def check_project(project_dir: str) -> tuple[Path, Path]:
    """(the project folder, its vite.js) or a UserError naming `project_dir` and what to run."""
    from roopik_rl_mcp.config import paths

    root = Path(os.path.realpath(Path(project_dir).expanduser()))
    if not root.is_dir():
        raise UserError("project_dir", f"{project_dir!r} is not a directory")
    if not (root / "package.json").is_file():
        raise UserError("project_dir", f"{root} has no package.json: give the folder of a Vite project")
    home = Path(os.path.realpath(paths().home))
    if root == home or root.is_relative_to(home):
        raise UserError("project_dir", f"{root} is inside the server's data directory")
    vite = root / "node_modules" / "vite" / "bin" / "vite.js"
    if not (root / "node_modules").exists():
        raise UserError("project_dir", f"{root} has no node_modules: run `npm install` in it first (captures never "
                                       "install packages)")
    if not vite.is_file():
        raise UserError("project_dir", f"{root}/node_modules has no vite: add it (`npm install -D vite`) and run "
                                       "`npm install`")
    return root, Path(os.path.realpath(vite))


def _config_loader(root: Path) -> str:
    """Native loading writes nothing beside the config; TypeScript configs need Vite's module runner on Node 20."""
    return "runner" if any((root / f"vite.config.{ext}").is_file() for ext in ("ts", "mts", "cts")) else "native"


def build_errors(stderr: str, root: Path) -> list[BuildMessage]:
    """Vite/Rolldown's message with the file, line and column it points at."""
    text = stderr.split("error during build:", 1)[-1]
    text = text.split("\n    at ", 1)[0].strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Build failed with")]
    message = next((line.strip() for line in lines if not line.lstrip().startswith(("╭", "│", "╰", "─"))), text[:500])
    match = _LOCATION.search(text) or _PLAIN_LOCATION.search(text)
    if not match:
        return [BuildMessage(text=message[:2000] or "vite build failed")]
    file = match.group("file").strip()
    file = os.path.relpath(file, root) if os.path.isabs(file) else file
    return [BuildMessage(file=file, line=int(match.group("line")), column=int(match.group("column")),
                         text=re.sub(r"^\[[\w:-]+\]\s*", "", message)[:2000], line_text=None)]


def build_project(project_dir: str, timeout_s: float) -> tuple[dict[str, tuple[str, bytes]] | None,
                                                               list[BuildMessage], str, float, bool]:
    """(resources to serve or None, errors, isolation, build ms, timed out)."""
    from roopik_rl_mcp.ui.runtime import node_binary, runtime_dir
    from roopik_rl_mcp.ui.sandbox import bwrap_argv, isolation_for, sandbox_env

    root, vite = check_project(project_dir)
    node = node_binary()
    if node is None:
        raise UserError("project_dir", "Node.js is not installed: run `make setup`")
    out = Path(tempfile.mkdtemp(prefix="roopik-vite-"))
    try:
        os.chmod(out, 0o777)  # the sandboxed build runs as uid 65534
        argv = [os.path.realpath(node), str(vite), "build", "--outDir", str(out / "dist"), "--emptyOutDir",
                "--sourcemap", "--base", "/", "--configLoader", _config_loader(root), "--logLevel", "warn"]
        ro = sorted({str(root), str(vite.parents[2]), str(Path(os.path.realpath(runtime_dir())))})
        isolation, _ = isolation_for(ro)
        if isolation == "bwrap":
            command, env = bwrap_argv(argv, ro_paths=ro, rw_paths=[str(out)], chdir=str(root),
                                      env={"NODE_ENV": "production"}), None
        else:
            command, env = argv, sandbox_env({"NODE_ENV": "production"})
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=str(root), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)
        try:
            _, stderr = process.communicate(timeout=max(1.0, timeout_s - BUILD_MARGIN_S))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return None, [], isolation, (time.perf_counter() - started) * 1000, True
        build_ms = (time.perf_counter() - started) * 1000
        if process.returncode != 0:
            return None, build_errors(stderr, root), isolation, build_ms, False
        return _resources(out / "dist", root), [], isolation, build_ms, False
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _resources(dist: Path, root: Path) -> dict[str, tuple[str, bytes]]:
    """Every file of dist/ by its URL path, with its content type; source maps name the project's files."""
    resources: dict[str, tuple[str, bytes]] = {}
    total = 0
    for path in sorted(dist.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if path.suffix == ".map":
            data = _project_sources(data, path.parent, root)
        total += len(data)
        if total > MAX_DIST_BYTES:
            raise UserError("project_dir", f"the built app is over {MAX_DIST_BYTES // 2**20} MB")
        relative = "/" + path.relative_to(dist).as_posix()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        if path.suffix in (".js", ".mjs"):
            kind = "text/javascript; charset=utf-8"
        resources[relative] = (kind, data)
    if "/index.html" in resources:
        resources["/"] = resources["/index.html"]
    return resources


def _project_sources(data: bytes, map_dir: Path, root: Path) -> bytes:
    """Vite names sources relative to the map in the (deleted) temp dist: name them as the project does,
    `src/main.tsx`, or `node_modules/<package>/...` for a package's file (wherever node_modules really is)."""
    try:
        source_map = json.loads(data)
    except ValueError:
        return data
    if not isinstance(source_map, dict) or not isinstance(source_map.get("sources"), list):
        return data
    named = []
    for source in source_map["sources"]:
        if not isinstance(source, str) or "\0" in source or not (source.startswith("../") or os.path.isabs(source)):
            named.append(source)  # a virtual module (vite/modulepreload-polyfill)
            continue
        full = os.path.normpath(os.path.join(map_dir, source))
        if "/node_modules/" in full:
            named.append("node_modules/" + full.split("/node_modules/", 1)[1])
        else:
            named.append(os.path.relpath(full, root))
    source_map["sources"] = named
    return json.dumps(source_map).encode()

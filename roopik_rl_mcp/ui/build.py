"""Component builds: esbuild + Tailwind v4 in one long-lived Node worker (runtime/worker.mjs), sandboxed.

Measured on the 2-core dev machine: the esbuild CLI costs ~0.33 s per bundle with React inside and the
Tailwind CLI ~0.6 s per run, most of it start-up and re-bundling React. The warm worker builds a component
in ~5 ms (React and the other packages come from vendor scripts built once per installed runtime and cached
on disk) and its Tailwind CSS in ~20 ms. Bare imports resolve only to the runtime's packages; anything
else is a build error that names it (see worker.mjs).
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import subprocess
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from pydantic import BaseModel, Field

from roopik_rl_mcp.ui import runtime, sandbox
from roopik_rl_mcp.ui.models import BuildMessage

logger = logging.getLogger(__name__)

BUILD_TIMEOUT_S = 30.0
VENDOR_TIMEOUT_S = 120.0
EXTENSIONS = {"tsx": "tsx", "jsx": "jsx", "ts": "ts", "js": "js"}


class BuildOutput(BaseModel):
    """One component build: the bundle with its source map and CSS, or the errors."""

    ok: bool
    js: str = ""
    map: str = ""
    css: str = ""
    groups: list[str] = Field(default_factory=list, description="Vendor scripts the bundle needs, in load order.")
    errors: list[BuildMessage] = Field(default_factory=list)
    warnings: list[BuildMessage] = Field(default_factory=list)
    esbuild_ms: float = 0.0
    tailwind_ms: float = 0.0


class BuildWorkerError(RuntimeError):
    """The worker died or answered with an internal error (not a build error in the code)."""


class BuildWorker:
    """The Node process, started on first use and again after it dies; safe to call from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._write = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self.isolation = "process"
        self._vendor: dict[str, str] | None = None
        self._vendor_lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        root = runtime.ensure_runtime()
        node = runtime.node_binary() or "node"
        argv = [node, str(root / "worker.mjs")]
        level, why = sandbox.isolation_for([str(root)])
        env = sandbox.sandbox_env()
        if level == "bwrap" and node.startswith("/usr/"):
            argv = sandbox.bwrap_argv(argv, ro_paths=[str(root)])
        else:
            level = "process"
            env = {**env, "HOME": os.environ.get("HOME", "/tmp")}
        self.isolation = level
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, encoding="utf-8", env=env, cwd="/", bufsize=1)
        threading.Thread(target=self._read, args=(proc,), name="ui-build-reader", daemon=True).start()
        threading.Thread(target=self._drain_stderr, args=(proc,), name="ui-build-stderr", daemon=True).start()
        logger.info("UI build worker started (pid %s, isolation %s)", proc.pid, level)
        return proc

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout or ():
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("UI build worker wrote a line that is not JSON: %.200s", line)
                continue
            with self._lock:
                future = self._pending.pop(answer.get("id"), None)
            if future is not None and not future.done():
                future.set_result(answer)
        with self._lock:
            stranded = [f for f in self._pending.values()]
            self._pending.clear()
            if self._proc is proc:
                self._proc = None
        for future in stranded:
            if not future.done():
                future.set_exception(BuildWorkerError(f"the UI build worker exited (code {proc.wait()})"))

    def _drain_stderr(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stderr or ():
            logger.warning("UI build worker: %s", line.rstrip())

    def request(self, op: str, timeout_s: float = BUILD_TIMEOUT_S, **fields: object) -> dict:
        """Send one request and wait for its answer; a dead worker is restarted on the next request."""
        future: Future = Future()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            request_id = next(self._ids)
            self._pending[request_id] = future
        line = json.dumps({"id": request_id, "op": op, **fields}) + "\n"
        try:
            with self._write:
                if proc.stdin is None:
                    raise BrokenPipeError("no stdin")
                proc.stdin.write(line)
                proc.stdin.flush()
            answer = future.result(timeout=timeout_s)
        except (BrokenPipeError, OSError) as error:
            raise BuildWorkerError(f"the UI build worker is gone: {error}") from error
        except FutureTimeout:
            with self._lock:
                self._pending.pop(request_id, None)
            self.stop()  # a worker that does not answer in time is replaced
            raise BuildWorkerError(f"the UI build worker did not answer {op} within {timeout_s:.0f} s") from None
        if "fatal" in answer:
            raise BuildWorkerError(f"the UI build worker failed on {op}: {answer['fatal'][:2000]}")
        return answer

    def build(self, code: str, language: str, filename: str) -> BuildOutput:
        answer = self.request("build", code=code, language=EXTENSIONS[language], filename=filename)
        return BuildOutput.model_validate(answer)

    def tailwind(self, content: str, extension: str = "html") -> str:
        return self.request("tailwind", content=content, extension=extension)["css"]

    def vendor(self) -> dict[str, str]:
        """The vendor scripts by group: from memory, else the disk cache, else built (once per runtime)."""
        with self._vendor_lock:
            if self._vendor is None:
                self._vendor = self._load_or_build_vendor()
            return self._vendor

    def _load_or_build_vendor(self) -> dict[str, str]:
        cache = runtime.vendor_cache_dir()
        index = cache / "index.json"
        if index.is_file():
            try:
                groups = json.loads(index.read_text(encoding="utf-8"))
                return {name: (cache / f"{name}.js").read_text(encoding="utf-8") for name in groups}
            except (OSError, ValueError) as error:
                logger.warning("UI vendor cache at %s unreadable (%s): rebuilding", cache, error)
        started = time.perf_counter()
        answer = self.request("vendor", timeout_s=VENDOR_TIMEOUT_S)
        scripts = {name: group["js"] for name, group in answer["groups"].items()}
        _write_cache(cache, scripts)
        logger.info("UI vendor scripts built in %.1f s (%s)", time.perf_counter() - started, cache)
        return scripts

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _write_cache(cache: Path, scripts: dict[str, str]) -> None:
    """Written beside and renamed into place, so a concurrent reader sees all of it or none."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for name, js in scripts.items():
            tmp = cache / f".{name}.js.{os.getpid()}"
            tmp.write_text(js, encoding="utf-8")
            os.replace(tmp, cache / f"{name}.js")
        tmp = cache / f".index.json.{os.getpid()}"
        tmp.write_text(json.dumps(sorted(scripts)), encoding="utf-8")
        os.replace(tmp, cache / "index.json")
    except OSError as error:
        logger.warning("UI vendor cache not written to %s: %s", cache, error)


_WORKER: BuildWorker | None = None
_WORKER_LOCK = threading.Lock()


def worker() -> BuildWorker:
    """The process-wide build worker."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = BuildWorker()
            atexit.register(_WORKER.stop)
        return _WORKER


def build_component(code: str, language: str, filename: str) -> BuildOutput:
    """Bundle one component module (tsx, jsx, ts, js) with its Tailwind CSS; errors carry file/line/column."""
    return worker().build(code, language, filename)

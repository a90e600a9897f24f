"""Background jobs (training, evaluation) as detached subprocesses that outlive the server.

Each job has a directory with `config.json`, `progress.jsonl` (JSON lines the job appends: start, log,
message, end), `log.txt` (its stdout and stderr) and its outputs. The database row is the index, so a
restarted server picks up where it left off. A job's state follows its process, not its files: while the
recorded pid (with its start time, against pid reuse) lives, the job is running whatever the progress
file says; once it has exited, it succeeded only if it left its final summary (`training_summary.json`
or `result.json`). The progress file gives steps and metrics, never the verdict.

A job writes into `output.partial/`; only on success is that renamed to `output/` (published), so a
cancelled or failed job leaves nothing that looks like an adapter or a result. At most
`ROOPIK_RL_MAX_JOBS` (default 1) run at once; the rest wait as `queued`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from roopik_rl_mcp.config import REPO_ROOT, paths
from roopik_rl_mcp.errors import NotFound, UserError
from roopik_rl_mcp.schemas import JobStatusOutput
from roopik_rl_mcp.store import Store, new_id

ACTIVE = ("queued", "running")
LOG_TAIL_LINES = 40
STARTING_GRACE_S = 30.0
FINAL_SUMMARIES = ("result.json", "training_summary.json")
"""Written by a job as its very last step: their presence after exit is what success means."""
STAGING_DIR = "output.partial"
PUBLISHED_DIR = "output"


def _record_evaluation(store: Store, job: dict, summary: dict) -> None:
    store.insert("evaluations", {"id": new_id("ev"), "job_id": job["id"], "benchmark": job["config"].get("benchmark"),
                                 "result": summary})


ON_SUCCESS: dict[str, Callable[[Store, dict, dict], None]] = {"evaluation": _record_evaluation}
"""The job kinds (dpo, sft, grpo, reward_model, evaluation): what each records once it succeeded, beyond its own output."""
JOB_KINDS = ("dpo", "sft", "grpo", "reward_model", "evaluation")


def read_progress(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line so far (a half-written last line is ignored until it is complete)."""
    events = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.endswith("\n"):
                    try:
                        events.append(json.loads(line))
                    except ValueError:
                        continue
    except FileNotFoundError:
        pass
    return events


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64_000))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int | None, started: float | None) -> bool:
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if started and abs(process.create_time() - started) > 1.0:
            return False  # the pid was reused by another process
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def discard_output(job: dict) -> None:
    """A job that did not succeed keeps its log and config, and nothing that could pass for a result."""
    for folder in {Path(job["config"]["output_dir"]), Path(job["output_dir"])}:
        if folder.is_dir() and folder.resolve().is_relative_to(Path(job["job_dir"]).resolve()):
            shutil.rmtree(folder, ignore_errors=True)


class JobManager:
    """Starts, watches and cancels job subprocesses; every state change goes to the store."""

    def __init__(self, store: Store, max_running: int | None = None) -> None:
        self.store = store
        self.max_running = max_running or int(os.environ.get("ROOPIK_RL_MAX_JOBS", "1"))
        self._children: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()

    # -- creating ----------------------------------------------------------------------------------
    def submit(self, kind: str, name: str | None, config: dict[str, Any],
               argv: Callable[[Path], list[str]], prepare: Callable[[Path], dict[str, Any]] | None = None) -> dict:
        """Create the job dir and row; `prepare(job_dir)` may add config (e.g. exported data paths)."""
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
        job_id = new_id(kind)
        job_dir = paths().jobs / job_id
        output_dir = job_dir / PUBLISHED_DIR  # appears only when the job succeeds
        staging_dir = job_dir / STAGING_DIR
        staging_dir.mkdir(parents=True)
        config = {**config, "job_id": job_id, "output_dir": str(staging_dir),
                  "progress_path": str(job_dir / "progress.jsonl"), "tiny_model_path": str(paths().tiny_model)}
        if prepare:
            try:
                config.update(prepare(job_dir))
            except BaseException:
                shutil.rmtree(job_dir, ignore_errors=True)
                raise
        config["argv"] = argv(job_dir / "config.json")
        (job_dir / "config.json").write_text(json.dumps(config, indent=2))
        row = self.store.insert("jobs", {
            "id": job_id, "kind": kind, "name": name, "status": "queued", "config": config,
            "job_dir": str(job_dir), "output_dir": str(output_dir),
        })
        self.refresh_all()
        return self.store.get("jobs", job_id) or row

    def _start(self, job: dict) -> None:
        job_dir = Path(job["job_dir"])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        log = open(job_dir / "log.txt", "ab")
        try:
            proc = subprocess.Popen(job["config"]["argv"], cwd=str(job_dir), env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as exc:
            self.store.update("jobs", job["id"], {"status": "failed", "error": f"could not start: {exc}",
                                                  "finished_at": time.time()})
            return
        finally:
            log.close()
        self._children[job["id"]] = proc
        self.store.update("jobs", job["id"], {"pid": proc.pid, "pid_started": psutil.Process(proc.pid).create_time()})

    # -- watching ----------------------------------------------------------------------------------
    def refresh_all(self) -> None:
        with self._lock:
            for job in self.store.rows("jobs", "status = 'running'"):
                self._refresh(job)
            while (job := self._claim_next()) is not None:
                self._start(job)

    def _claim_next(self) -> dict | None:
        """Atomically move the oldest queued job to running, if there is room.

        Several server processes (one per MCP client) may share a data dir; the IMMEDIATE transaction
        makes the count and the claim one step, so a job is never started twice.
        """
        with self.store.transaction() as db:
            running = db.execute("select count(*) from jobs where status = 'running'").fetchone()[0]
            if running >= self.max_running:
                return None
            row = db.execute("select id from jobs where status = 'queued' order by created_at limit 1").fetchone()
            if row is None:
                return None
            db.execute("update jobs set status = 'running', started_at = ? where id = ?", [time.time(), row[0]])
        return self.store.get("jobs", row[0])

    def _refresh(self, job: dict) -> None:
        if job["pid"] is None and time.time() - (job["started_at"] or 0) < STARTING_GRACE_S:
            return  # claimed a moment ago, by this or another server process; its pid is on the way
        events = read_progress(Path(job["config"]["progress_path"]))
        changes: dict[str, Any] = self._progress(events)
        child = self._children.get(job["id"])
        exited = child.poll() is not None if child else not _alive(job["pid"], job["pid_started"])
        if not exited:
            if changes:
                self.store.update("jobs", job["id"], changes)
            return
        end = next((e for e in reversed(events) if e.get("event") == "end"), None)
        summary = self._final_summary(job)
        if summary is not None:
            metrics = {**(changes.get("last_metrics") or job.get("last_metrics") or {}),
                       **{k: v for k, v in ((end or {}).get("metrics") or summary.get("metrics") or {}).items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)}}
            changes.update(status="succeeded", error=None, result=summary, last_metrics=metrics,
                           finished_at=(end or {}).get("time") or time.time())
        else:
            code = child.returncode if child else None
            reported = (end or {}).get("error") if (end or {}).get("status") == "failed" else None
            changes.update(status="failed", finished_at=time.time(), error=reported or (
                f"the job exited{f' with code {code}' if code is not None else ''} without writing its final summary"))
        if self._finish(job, changes) and changes["status"] == "succeeded" and job["kind"] in ON_SUCCESS:
            ON_SUCCESS[job["kind"]](self.store, job, summary)
        self._children.pop(job["id"], None)

    @staticmethod
    def _progress(events: list[dict[str, Any]]) -> dict[str, Any]:
        """Step, max_steps and the latest metrics from the progress events (display only)."""
        logs = [e for e in events if e.get("event") == "log"]
        starts = [e for e in events if e.get("event") == "start"]
        if logs:
            return dict(step=logs[-1].get("step"), max_steps=logs[-1].get("max_steps"),
                        last_metrics=logs[-1].get("metrics") or {})
        if starts and starts[-1].get("max_steps"):
            return dict(step=0, max_steps=starts[-1]["max_steps"])
        return {}

    @staticmethod
    def _final_summary(job: dict) -> dict | None:
        """The summary the job wrote as its last step (in staging, or already published), if any."""
        for folder in (Path(job["config"]["output_dir"]), Path(job["output_dir"])):
            for name in FINAL_SUMMARIES:
                path = folder / name
                if path.is_file():
                    try:
                        data = json.loads(path.read_text())
                    except ValueError:
                        return None
                    return data if isinstance(data, dict) else None
        return None

    def _finish(self, job: dict, changes: dict[str, Any]) -> bool:
        """Record the end of a running job and publish or discard its output, in one step.

        The row changes only if the job is still `running` (a cancel from another server may have won);
        the staging dir is renamed to `output/` inside the same write transaction, so a job is never
        `succeeded` without its output nor `cancelled` with one.
        """
        staging, published = Path(job["config"]["output_dir"]), Path(job["output_dir"])
        with self.store.transaction() as db:
            current = db.execute("select status from jobs where id = ?", [job["id"]]).fetchone()
            if not current or current[0] != "running":
                return False
            db["jobs"].update(job["id"], self.store._encode("jobs", changes))
            if changes["status"] == "succeeded" and staging != published and staging.is_dir():
                os.replace(staging, published)
        if changes["status"] != "succeeded":
            discard_output(job)
        return True

    # -- reading and cancelling -------------------------------------------------------------------------
    def get(self, job_id: str) -> dict:
        self.refresh_all()
        job = self.store.get("jobs", job_id)
        if job is None:
            raise NotFound("job_id", job_id, "job")
        return job

    def status(self, job_id: str) -> JobStatusOutput:
        return self.describe(self.get(job_id))

    def list(self) -> list[JobStatusOutput]:
        self.refresh_all()
        return [self.describe(job) for job in self.store.rows("jobs", order_by="created_at desc")]

    def cancel(self, job_id: str) -> JobStatusOutput:
        job = self.get(job_id)
        if job["status"] in ACTIVE:
            if job["status"] == "running" and _alive(job["pid"], job["pid_started"]):
                self._terminate(job)
            with self.store.transaction() as db:  # only if no server recorded its end meanwhile
                db.execute("update jobs set status = 'cancelled', finished_at = ?, error = ? "
                           "where id = ? and status in ('queued', 'running')",
                           [time.time(), "cancelled by request", job_id])
            job = self.store.get("jobs", job_id)
            if job["status"] == "cancelled":
                discard_output(job)
            self._children.pop(job_id, None)
            self.refresh_all()
        return self.describe(self.store.get("jobs", job_id))

    def check_usable_output(self, path: str | None, field: str) -> None:
        """A model or adapter inside the jobs directory must be the published output of a succeeded job."""
        if not path:
            return
        jobs_root = Path(os.path.realpath(paths().jobs))
        target = Path(os.path.realpath(Path(path).expanduser()))
        if not target.is_relative_to(jobs_root) or target == jobs_root:
            return
        job_id = target.relative_to(jobs_root).parts[0]
        job = self.store.get("jobs", job_id)
        if job is None or job["status"] != "succeeded":
            state = job["status"] if job else "unknown"
            raise UserError(field, f"{path} belongs to job {job_id!r}, which is {state}; only a succeeded job's "
                                   "output can be used")
        if not target.is_relative_to(Path(os.path.realpath(job["output_dir"]))):
            raise UserError(field, f"{path} is not inside job {job_id!r}'s published output {job['output_dir']}")

    def _terminate(self, job: dict, grace_s: float = 5.0) -> None:
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(job["pid"], job["pid_started"]):
            child = self._children.get(job["id"])
            if child:
                child.poll()
            time.sleep(0.1)
        try:
            os.killpg(job["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child = self._children.get(job["id"])
        if child:
            child.wait()

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 1.0,
             on_progress: Callable[[JobStatusOutput], None] | None = None) -> JobStatusOutput:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.status(job_id)
            if on_progress:
                on_progress(state)
            if state.status not in ACTIVE or time.monotonic() > deadline:
                return state
            time.sleep(poll_s)

    @staticmethod
    def describe(job: dict) -> JobStatusOutput:
        step, max_steps = job.get("step"), job.get("max_steps")
        failed = job["status"] == "failed"
        return JobStatusOutput(
            job_id=job["id"], kind=job["kind"], name=job.get("name"), status=job["status"], step=step,
            max_steps=max_steps, progress=(round(step / max_steps, 4) if step is not None and max_steps else None),
            metrics={k: float(v) for k, v in (job.get("last_metrics") or {}).items() if isinstance(v, (int, float))},
            output_dir=job["output_dir"], created_at=job["created_at"], started_at=job.get("started_at"),
            finished_at=job.get("finished_at"), error=job.get("error"),
            log_tail=log_tail(Path(job["job_dir"]) / "log.txt") if failed else None,
            result=job.get("result"),
        )

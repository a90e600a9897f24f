"""judge_output(judge="reward_model:<job_id>"): a trained Bradley-Terry reward model as the judge.

The model runs in its own process (`roopik_rl_mcp.ml.reward_scoring`), started on first use and kept for
the next calls, so the server never imports torch and a second judgment costs milliseconds, not a model
load. The process reads its requests from a pipe and exits when the server does.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from pathlib import Path

from roopik_rl_mcp.config import REPO_ROOT, python_executable
from roopik_rl_mcp.errors import UserError
from roopik_rl_mcp.store import Store

PREFIX = "reward_model:"
LOAD_TIMEOUT_S = 45.0
"""How long a call waits for the model to load: under a client's 60 s tool timeout. A slower load goes on
in the background and the next call finds it ready."""
SCORE_TIMEOUT_S = 30.0


def job_id_of(judge: str) -> str | None:
    return judge[len(PREFIX):].strip() or None if judge.startswith(PREFIX) else None


def reward_model_job(store: Store, judge: str) -> dict:
    """The succeeded reward_model job named by `judge`, or a UserError naming the field."""
    job_id = job_id_of(judge)
    if not job_id:
        raise UserError("judge", "write 'reward_model:<job_id>' with the id of a succeeded reward_model job "
                                 "(start_training kind='reward_model')")
    job = store.get("jobs", job_id)
    if job is None:
        raise UserError("judge", f"no job with id {job_id!r}")
    if job["kind"] != "reward_model":
        raise UserError("judge", f"job {job_id!r} is a {job['kind']} job, not a reward_model job")
    if job["status"] != "succeeded" or not (Path(job["output_dir"]) / "adapter_config.json").is_file():
        raise UserError("judge", f"reward_model job {job_id!r} is {job['status']}; only a succeeded one can judge")
    return job


class _Scorer:
    """One scoring process and the lock that keeps its request/answer lines paired."""

    def __init__(self, adapter_dir: str, max_length: int, log_path: Path) -> None:
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               "TOKENIZERS_PARALLELISM": "false"}
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [python_executable(), "-m", "roopik_rl_mcp.ml.reward_scoring", "--adapter", adapter_dir,
                 "--max-length", str(max_length)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True)
        self.lock = threading.Lock()
        self.ready = False
        self.load_s: float | None = None
        self._lines: list[str] = []
        self._arrived = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._arrived:
                self._lines.append(line)
                self._arrived.notify_all()
        with self._arrived:
            self._arrived.notify_all()

    def _next_line(self, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while not self._lines:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and not self._lines:
                    return None
                self._arrived.wait(min(left, 0.5))
            return self._lines.pop(0)

    def _failure(self) -> str:
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.is_file() else ""
        return f"the reward model's process exited with code {self.process.returncode}: {tail.strip()}"

    def score(self, prompt: str, response: str) -> float:
        with self.lock:
            if not self.ready:
                line = self._next_line(LOAD_TIMEOUT_S)
                if line is None:
                    if self.process.poll() is not None:
                        raise RuntimeError(self._failure())
                    raise TimeoutError(f"the reward model is still loading after {LOAD_TIMEOUT_S:.0f} s; call again")
                self.load_s = json.loads(line).get("load_s")
                self.ready = True
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(json.dumps({"prompt": prompt, "response": response}) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                raise RuntimeError(self._failure()) from None
            line = self._next_line(SCORE_TIMEOUT_S)
            if line is None:
                raise RuntimeError(self._failure() if self.process.poll() is not None
                                   else f"the reward model gave no score within {SCORE_TIMEOUT_S:.0f} s")
            answer = json.loads(line)
            if "error" in answer:
                raise RuntimeError(answer["error"])
            return float(answer["score"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


_scorers: dict[str, _Scorer] = {}
_scorers_lock = threading.Lock()


def _scorer_for(job: dict) -> _Scorer:
    with _scorers_lock:
        scorer = _scorers.get(job["id"])
        if scorer is None or scorer.process.poll() is not None:
            hyper = (job.get("result") or {}).get("hyperparameters") or {}
            max_length = int(hyper.get("max_length") or job["config"].get("max_length") or 512)
            log_path = Path(job["job_dir"]) / "reward_scoring.log"
            scorer = _scorers[job["id"]] = _Scorer(job["output_dir"], max_length, log_path)
        return scorer


def score_with(job: dict, prompt: str, response: str) -> tuple[float, float]:
    """(raw Bradley-Terry score, its sigmoid in [0, 1]) of the response to the prompt."""
    scorer = _scorer_for(job)
    try:
        raw = scorer.score(prompt, response)
    except TimeoutError as exc:
        raise UserError("judge", str(exc)) from None
    except RuntimeError as exc:
        with _scorers_lock:
            _scorers.pop(job["id"], None)
        scorer.close()
        raise UserError("judge", f"reward model {job['id']!r} could not score: {exc}") from None
    return raw, 1.0 / (1.0 + math.exp(-raw)) if raw > -700 else 0.0


def close_all() -> None:
    with _scorers_lock:
        for scorer in _scorers.values():
            scorer.close()
        _scorers.clear()

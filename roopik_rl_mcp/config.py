"""Where data lives and which settings are in force.

Everything is read from the environment at call time (not import time) so tests and the CLI can point
one process at several data directories.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent
MAX_CODE_BYTES = 1_000_000
"""Code, tests and preference texts above this size are refused (1 MB)."""


def data_home() -> Path:
    """The one directory holding the database, artifacts, jobs, models and logs."""
    home = Path(os.environ.get("ROOPIK_RL_HOME") or Path.home() / ".roopik-rl").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def db(self) -> Path:
        return self.home / "episodes.db"

    @property
    def artifacts(self) -> Path:
        return self._dir("artifacts")

    @property
    def jobs(self) -> Path:
        return self._dir("jobs")

    @property
    def exports(self) -> Path:
        return self._dir("exports")

    @property
    def models(self) -> Path:
        return self._dir("models")

    @property
    def logs(self) -> Path:
        return self._dir("logs")

    @property
    def tiny_model(self) -> Path:
        """Built once on first use by the trainers' helper (a 2-layer Llama with a locally trained tokenizer).

        ROOPIK_RL_TINY_MODEL moves it (tests share one build across data dirs)."""
        override = os.environ.get("ROOPIK_RL_TINY_MODEL")
        return Path(override).expanduser() if override else self.models / "tiny-llama"

    def _dir(self, name: str) -> Path:
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def paths() -> Paths:
    return Paths(data_home())


def python_executable() -> str:
    """The interpreter for subprocesses (trainers, evaluation): the one running the server."""
    return sys.executable


def trainers_dir() -> Path:
    """Training scripts ship as the top-level `trainers` package next to `roopik_rl_mcp`."""
    import importlib.util

    spec = importlib.util.find_spec("trainers")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return REPO_ROOT / "trainers"


def prompts_dir() -> Path:
    local = REPO_ROOT / "prompts"
    if local.is_dir():
        return local
    import importlib.util

    spec = importlib.util.find_spec("prompts")
    assert spec and spec.submodule_search_locations, "prompts package missing"
    return Path(list(spec.submodule_search_locations)[0])

"""SQLite storage for episodes, judgments, preference pairs, jobs and evaluations.

One file (`episodes.db` in the data dir) through sqlite-utils, in WAL mode with a busy timeout so the
CLI, the demo and a running server can share it. The schema is versioned in `schema_version`; a new
version adds a migration to `MIGRATIONS`. Only the server process writes: subprocesses (training,
evaluation) report through files that the job service reads back in.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _import_sqlite_utils():
    """sqlite-utils imports pandas and numpy when installed, only to map their scalar types (~0.6 s here).

    The server never stores such values, so they are hidden for the length of this import: server
    start-up stays fast, and both remain importable afterwards for anyone who needs them.
    """
    import sys

    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        import sqlite_utils
        from sqlite_utils.db import NotFoundError
    finally:
        for name in hidden:
            sys.modules.pop(name, None)
    return sqlite_utils, NotFoundError


sqlite_utils, NotFoundError = _import_sqlite_utils()

SCHEMA_VERSION = 2

JSON_COLUMNS = {
    "episodes": ("errors", "metadata", "console_logs", "tests", "ui_checks", "ui"),
    "judgments": ("scores", "breakdown", "weights", "settings", "usage", "samples", "spread"),
    "comparisons": ("episode_ids", "result", "usage"),
    "preferences": ("metadata",),
    "jobs": ("config", "result", "last_metrics"),
    "evaluations": ("result",),
}


def _create_v1(db: sqlite_utils.Database) -> None:
    db["episodes"].create(
        {
            "id": str, "created_at": float, "task": str, "task_key": str, "code": str, "language": str,
            "tests": str, "entry_point": str, "model": str, "session_id": str, "metadata": str,
            "status": str, "passed": int, "tests_passed": int, "tests_total": int, "errors": str,
            "stdout": str, "stderr": str, "duration_ms": int, "isolation": str, "screenshot_path": str,
            "console_logs": str, "test_code": str,
        },
        pk="id",
        not_null={"task", "code", "status"},
    )
    db["episodes"].create_index(["task_key"])
    db["episodes"].create_index(["session_id"])
    db["judgments"].create(
        {
            "id": str, "created_at": float, "episode_id": str, "judge": str, "model": str, "scores": str,
            "overall": float, "rationale": str, "reward": float, "breakdown": str, "weights": str,
        },
        pk="id",
        foreign_keys=[("episode_id", "episodes", "id")],
    )
    db["judgments"].create_index(["episode_id"])
    db["preferences"].create(
        {
            "id": str, "created_at": float, "prompt": str, "chosen": str, "rejected": str,
            "chosen_reward": float, "rejected_reward": float, "margin": float, "source": str,
            "chosen_episode_id": str, "rejected_episode_id": str, "pair_key": str, "metadata": str,
        },
        pk="id",
    )
    db["preferences"].create_index(["pair_key"], unique=True)
    db["jobs"].create(
        {
            "id": str, "created_at": float, "kind": str, "name": str, "status": str, "pid": int,
            "pid_started": float, "config": str, "job_dir": str, "output_dir": str, "started_at": float,
            "finished_at": float, "error": str, "result": str, "step": int, "max_steps": int,
            "last_metrics": str,
        },
        pk="id",
    )
    db["evaluations"].create(
        {"id": str, "created_at": float, "job_id": str, "benchmark": str, "result": str},
        pk="id",
    )


def _add_v2(db: sqlite_utils.Database) -> None:
    """UI episodes: where the language came from, the checks asked for, what the browser saw, artifacts."""
    for column, kind in (("language_source", str), ("backend", str), ("ui_checks", str), ("ui", str),
                         ("screenshot_id", str)):
        db["episodes"].add_column(column, kind)
    db.execute("update episodes set language_source = 'given', backend = 'sandbox' where language_source is null")
    for column, kind in (("template_hash", str), ("settings", str), ("usage", str), ("latency_ms", int),
                         ("cache_key", str), ("samples", str), ("spread", str)):
        db["judgments"].add_column(column, kind)
    db["judgments"].create_index(["cache_key"])
    db["comparisons"].create(
        {"id": str, "created_at": float, "kind": str, "episode_ids": str, "judge": str, "model": str,
         "template_hash": str, "result": str, "consistent": int, "usage": str},
        pk="id",
    )
    db["artifacts"].create(
        {"id": str, "created_at": float, "media_type": str, "path": str, "size": int},
        pk="id",
    )


MIGRATIONS = {1: _create_v1, 2: _add_v2}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


class Store:
    """Thread-safe access to the database (sync tools run on worker threads)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        self.db = sqlite_utils.Database(conn)
        self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys = ON")
        self._lock = threading.RLock()
        self._migrate()

    # -- schema ------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self.transaction():
            if "schema_version" not in self.db.table_names():
                self.db["schema_version"].create({"version": int, "applied_at": float}, pk="version")
            current = self.schema_version()
            for version in sorted(MIGRATIONS):
                if version > current:
                    MIGRATIONS[version](self.db)
                    self.db["schema_version"].insert({"version": version, "applied_at": time.time()})
            if self.schema_version() > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema v{self.schema_version()}; this version knows v{SCHEMA_VERSION}")

    def schema_version(self) -> int:
        row = self.db.execute("select max(version) from schema_version").fetchone()
        return int(row[0] or 0)

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One writer at a time in this process; BEGIN IMMEDIATE so other processes wait, not fail."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- generic row helpers -------------------------------------------------------------------------
    def insert(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        row = {"created_at": time.time(), **row}
        with self.transaction() as db:
            db[table].insert(self._encode(table, row))
        return row

    def update(self, table: str, row_id: str, changes: dict[str, Any]) -> None:
        with self.transaction() as db:
            db[table].update(row_id, self._encode(table, changes))

    def get(self, table: str, row_id: str) -> dict[str, Any] | None:
        with self._lock:
            try:
                return self._decode(table, self.db[table].get(row_id))
            except NotFoundError:
                return None

    def rows(self, table: str, where: str | None = None, params: Any = None, order_by: str | None = "created_at",
             limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            found = self.db[table].rows_where(where, params or [], order_by=order_by, limit=limit)
            return [self._decode(table, row) for row in found]

    def count(self, table: str, where: str | None = None, params: Any = None) -> int:
        with self._lock:
            sql = f"select count(*) from [{table}]" + (f" where {where}" if where else "")
            return int(self.db.execute(sql, params or []).fetchone()[0])

    @staticmethod
    def _encode(table: str, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for column in JSON_COLUMNS.get(table, ()):
            if column in out and out[column] is not None and not isinstance(out[column], str):
                out[column] = json.dumps(out[column], allow_nan=False)  # NaN would make the row unreadable JSON
        return out

    @staticmethod
    def _decode(table: str, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for column in JSON_COLUMNS.get(table, ()):
            if isinstance(out.get(column), str):
                out[column] = json.loads(out[column])
        return out

    # -- queries the services share ------------------------------------------------------------------
    def latest_judgment(self, episode_id: str) -> dict[str, Any] | None:
        found = self.rows("judgments", "episode_id = ?", [episode_id], order_by="created_at desc", limit=1)
        return found[0] if found else None

    def judged_episodes(self) -> list[dict[str, Any]]:
        """Every episode with its most recent judgment's reward, for automatic pairing."""
        sql = """
            select e.id, e.task, e.task_key, e.code, e.status, e.created_at, j.reward, j.id as judgment_id
            from episodes e
            join judgments j on j.id = (
                select id from judgments where episode_id = e.id order by created_at desc limit 1)
            order by e.created_at
        """
        with self._lock:
            cursor = self.db.execute(sql)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # -- safety ----------------------------------------------------------------------------------------
    def integrity_check(self) -> list[str]:
        """SQLite's own check of the whole file: ["ok"] when sound, else what is broken."""
        with self._lock:
            return [row[0] for row in self.db.execute("PRAGMA integrity_check").fetchall()]

    def backup(self, destination: Path | str) -> None:
        """A consistent copy through SQLite's online backup API, safe while servers keep writing."""
        target = sqlite3.connect(str(destination))
        try:
            with self._lock:
                self.db.conn.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

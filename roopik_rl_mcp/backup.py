"""`roopik-rl-mcp backup` and `restore`: consistent copies of the database, taken while servers run.

SQLite's online backup API copies page by page under its own locking, so a backup made while servers
keep writing is a consistent snapshot (a plain `cp` of a WAL database is not). A restore checks the
copy first and keeps the database it replaces.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from roopik_rl_mcp.config import paths
from roopik_rl_mcp.store import Store


class BackupError(RuntimeError):
    """Something the user must fix: the message says what."""


def check_database(path: Path) -> int:
    """The schema version of a sound roopik-rl database file, or BackupError saying why it is not one."""
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise BackupError(f"{path} fails SQLite's integrity check: {'; '.join(problems[:5])}")
            tables = {row[0] for row in conn.execute("select name from sqlite_master where type = 'table'")}
            if not {"schema_version", "episodes"} <= tables:
                raise BackupError(f"{path} is a SQLite file but not a roopik-rl database")
            return int(conn.execute("select max(version) from schema_version").fetchone()[0] or 0)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a readable SQLite database ({exc})") from None


def backup(destination: Path, force: bool = False) -> str:
    source = paths().db
    destination = destination.expanduser()
    if destination.is_dir():
        destination = destination / f"episodes-{time.strftime('%Y%m%d-%H%M%S')}.db"
    if destination.resolve() in {source.resolve(), *(source.with_name(source.name + s).resolve() for s in ("-wal", "-shm"))}:
        raise BackupError(f"{destination} is the live database itself; choose another destination")
    if destination.exists() and not force:
        raise BackupError(f"{destination} already exists; pass --force to replace it")
    if not destination.parent.is_dir():
        raise BackupError(f"directory {destination.parent} does not exist")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    store = Store(source)
    try:
        store.backup(partial)
    finally:
        store.close()
    version = check_database(partial)
    partial.replace(destination)
    return f"backed up {source} to {destination} (schema v{version}, {destination.stat().st_size:,} bytes)"


def restore(backup_file: Path) -> str:
    """Replace the live database's content with a checked backup; the old content is kept beside it."""
    backup_file = backup_file.expanduser()
    version = check_database(backup_file)
    live = paths().db
    kept = paths().home / "backups" / f"before-restore-{time.strftime('%Y%m%d-%H%M%S')}.db"
    kept.parent.mkdir(parents=True, exist_ok=True)
    store = Store(live)
    try:
        store.backup(kept)
        source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
        try:
            with store._lock:
                source.backup(store.db.conn)  # page by page into the live file, under SQLite's locks
        finally:
            source.close()
        problems = store.integrity_check()
    finally:
        store.close()
    if problems != ["ok"]:
        raise BackupError(f"the restored database fails its integrity check ({problems[:3]}); "
                          f"the previous one is at {kept}")
    return f"restored {live} from {backup_file} (schema v{version}); the previous database is kept at {kept}"

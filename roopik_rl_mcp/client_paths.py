"""Paths a client gives for writing: confined to where exports belong, written atomically.

The server often runs as root in containers, and one tool call must never be able to replace the
database, write into /etc or inject bytes into the stdio channel. A write goes only to the data dir's
`exports/` (a bare name or a relative path lands there) or under a directory the user listed in
ROOPIK_RL_EXPORT_DIRS, never over a symlink, special file or SQLite database, and never over an existing
file unless the client asked for it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from roopik_rl_mcp.config import paths
from roopik_rl_mcp.errors import UserError

EXPORT_DIRS_ENV = "ROOPIK_RL_EXPORT_DIRS"
EXPORT_SUFFIX = ".jsonl"
SQLITE_HEADER = b"SQLite format 3\x00"


def export_roots() -> list[Path]:
    """Where exports may go: the data dir's exports/ first, then the user's ROOPIK_RL_EXPORT_DIRS."""
    roots = [Path(os.path.realpath(paths().exports))]
    for entry in os.environ.get(EXPORT_DIRS_ENV, "").split(os.pathsep):
        if entry.strip():
            roots.append(Path(os.path.realpath(Path(entry.strip()).expanduser())))
    return roots


def _allowed_places(roots: list[Path]) -> str:
    extra = ", ".join(str(r) for r in roots[1:]) or f"none set in {EXPORT_DIRS_ENV}"
    return (f"exports go to {roots[0]} (a bare name or a relative path lands there) or under a directory "
            f"listed in {EXPORT_DIRS_ENV} ({extra})")


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def export_target(path: str, field: str = "path") -> Path:
    """The real path a client's export `path` stands for, or a UserError naming the allowed places.

    Only the directory part is resolved (symlinks followed): the file itself is replaced by rename, so a
    symlink in its place is refused rather than written through.
    """
    roots = export_roots()
    given = Path(path).expanduser()
    if given.name in ("", ".", "..") or path.endswith(("/", os.sep)):
        raise UserError(field, f"{path!r} names a directory; give a file name ending in {EXPORT_SUFFIX}")
    candidate = given if given.is_absolute() else roots[0] / given
    target = Path(os.path.realpath(candidate.parent)) / candidate.name
    if not any(_inside(target.parent, root) for root in roots):
        raise UserError(field, f"{path!r} resolves to {target}, outside the allowed places: {_allowed_places(roots)}")
    home = Path(os.path.realpath(paths().home))
    if _inside(target, home) and not _inside(target.parent, roots[0]):
        raise UserError(field, f"{target} is inside the data directory but not in {roots[0]}; the database, jobs "
                               "and models there are never written by an export")
    if given.suffix != EXPORT_SUFFIX:
        raise UserError(field, f"{path!r} must end in {EXPORT_SUFFIX} (TRL preference JSONL)")
    return target


def check_writable(target: Path, overwrite: bool, field: str = "path") -> None:
    """Refuse what must not be replaced: symlinks, special files, databases, and (unless asked) any file."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return
    if target.is_symlink():
        raise UserError(field, f"{target} is a symbolic link; exports are never written through links")
    if not target.is_file():
        raise UserError(field, f"{target} exists and is not a regular file")
    if info.st_size >= len(SQLITE_HEADER):
        with open(target, "rb") as handle:
            if handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                raise UserError(field, f"{target} is a SQLite database; it is never overwritten by an export")
    if not overwrite:
        raise UserError(field, f"{target} already exists; pass overwrite=true to replace it, or choose another name")


def write_atomically(target: Path, lines: Iterable[str], overwrite: bool) -> None:
    """Write to a temporary file beside `target`, then move it into place in one step.

    Without `overwrite` the move is a hard link, which fails if the name appeared meanwhile: an existing
    file is never replaced by accident. Readers never see a half-written file.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.",
                                         suffix=".tmp", delete=False)
    temporary = Path(handle.name)
    try:
        with handle:
            for line in lines:
                handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise UserError("path", f"{target} already exists; pass overwrite=true to replace it") from None
            except OSError:  # a file system without hard links: check, then rename
                if os.path.lexists(target):
                    raise UserError("path", f"{target} already exists; pass overwrite=true to replace it") from None
                os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)

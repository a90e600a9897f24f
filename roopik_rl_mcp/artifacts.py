"""Screenshots and other binary artifacts, stored once by content in the data dir.

The same picture captured twice costs one file; an episode keeps only the artifact's id, and clients
read it back as `artifacts://{id}`. A PNG is decoded with Pillow before it is kept, so a corrupt image a
client sends is a clear error rather than a broken training example.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

from roopik_rl_mcp.config import paths
from roopik_rl_mcp.errors import NotFound, UserError
from roopik_rl_mcp.store import Store

PNG = "image/png"
MAX_PNG_BYTES = 20 * 1024 * 1024
MAX_PNG_PIXELS = 40_000_000


def check_png(data: bytes, field: str) -> tuple[int, int]:
    """The PNG's size in pixels, or a UserError saying why `data` is not a usable PNG."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_PNG_BYTES:
        raise UserError(field, f"the image is {len(data):,} bytes; the limit is {MAX_PNG_BYTES:,}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise UserError(field, f"expected a PNG image, got {image.format or 'an unknown format'}")
            if image.width * image.height > MAX_PNG_PIXELS:
                raise UserError(field, f"the image is {image.width}x{image.height} pixels; too large")
            image.load()
            return image.width, image.height
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(field, f"the image does not decode as a PNG ({exc.__class__.__name__}: {exc})") from None


def artifact_path(artifact_id: str) -> Path:
    return paths().artifacts / f"{artifact_id}.png"


def save_png(store: Store, data: bytes, field: str = "screenshot") -> str:
    """Keep a PNG (checked first) and return its id: the sha256 of its bytes."""
    check_png(data, field)
    artifact_id = hashlib.sha256(data).hexdigest()
    path = artifact_path(artifact_id)
    if not path.exists():
        temporary = path.with_name(f".{artifact_id}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    with store.transaction() as db:  # a second capture of the same picture keeps the first row
        db["artifacts"].insert({"id": artifact_id, "created_at": time.time(), "media_type": PNG,
                                "path": str(path), "size": len(data)}, ignore=True)
    return artifact_id


def load(store: Store, artifact_id: str) -> tuple[bytes, str]:
    """An artifact's bytes and media type, or NotFound."""
    row = store.get("artifacts", artifact_id) if len(artifact_id) == 64 else None
    if row is None:
        raise NotFound("artifact_id", artifact_id, "artifact")
    return artifact_path(artifact_id).read_bytes(), row["media_type"]

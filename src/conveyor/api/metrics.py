"""/metrics: the store's MetricsSnapshot in the Prometheus text format.

A fresh registry with one collector per scrape: the numbers come from the store (shared by
every API process), not from counters kept in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from conveyor.ports import RUN_TIME_BUCKETS, CounterEvent, MetricsSnapshot

COUNTER_HELP = {
    CounterEvent.ENQUEUED: "Jobs created (idempotent replays not counted).",
    CounterEvent.COMPLETED: "Jobs that completed.",
    CounterEvent.FAILED: "Jobs that failed for good (the dead-letter queue).",
    CounterEvent.RETRIED: "Failed attempts that will run again.",
    CounterEvent.CANCELLED: "Jobs that were cancelled.",
}


class SnapshotCollector(Collector):
    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield self._jobs()
        yield self._oldest_age()
        yield from self._counters()
        yield self._run_time()
        yield GaugeMetricFamily(
            "conveyor_workers_alive", "Workers heartbeating now.", value=self.snapshot.workers_alive
        )

    def _jobs(self) -> Metric:
        family = GaugeMetricFamily(
            "conveyor_jobs", "Jobs by queue and state, now.", labels=["queue", "state"]
        )
        for (queue, state), count in sorted(self.snapshot.jobs.items()):
            family.add_metric([queue, state.value], count)
        return family

    def _oldest_age(self) -> Metric:
        family = GaugeMetricFamily(
            "conveyor_queue_oldest_job_age_seconds",
            "Age of the oldest queued job, per queue.",
            labels=["queue"],
        )
        for queue, age in sorted(self.snapshot.oldest_queued_age_seconds.items()):
            family.add_metric([queue], age)
        return family

    def _counters(self) -> Iterator[Metric]:
        for event in CounterEvent:
            family = CounterMetricFamily(
                f"conveyor_jobs_{event.value}", COUNTER_HELP[event], labels=["queue"]
            )
            for (counted, queue), total in sorted(self.snapshot.counters.items()):
                if counted is event:
                    family.add_metric([queue], total)
            yield family

    def _run_time(self) -> Metric:
        family = HistogramMetricFamily(
            "conveyor_job_run_seconds", "Run time of attempts, per queue.", labels=["queue"]
        )
        bounds = [*(str(bound) for bound in RUN_TIME_BUCKETS), "+Inf"]
        for queue, histogram in sorted(self.snapshot.run_time.items()):
            # The store counts per bucket; Prometheus buckets are cumulative.
            cumulative = list(accumulate(histogram.bucket_counts))
            family.add_metric(
                [queue],
                buckets=list(zip(bounds, cumulative, strict=True)),
                sum_value=histogram.total_seconds,
            )
        return family


def render(snapshot: MetricsSnapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)

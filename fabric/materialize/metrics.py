"""Prometheus metrics of an instance, read from its status at scrape time.

Nothing on the apply path touches a metric: the collector turns :meth:`Materializer.status` into
gauges, counters and the commit → visible histogram (counted in plain lists by the appliers,
:mod:`fabric.materialize.freshness`) when Prometheus scrapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from fabric.errors import PortInUseError
from fabric.materialize.freshness import BOUNDS_MS
from fabric.materialize.status import InstanceStatus

_LABELS = ["instance", "topic", "partition", "table"]


class StatusCollector(Collector):
    def __init__(self, status: Callable[[], InstanceStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Any]:
        status = self._status()
        gauges = {
            "lag": GaugeMetricFamily(
                "fabric_partition_lag_records",
                "Records between the applied position and the end of the partition",
                labels=_LABELS,
            ),
            "applied_offset": GaugeMetricFamily(
                "fabric_partition_applied_offset",
                "Offset of the last record applied to the store",
                labels=_LABELS,
            ),
            "active": GaugeMetricFamily(
                "fabric_partition_active",
                "1 when the partition is ACTIVE, 0 while RESTORING",
                labels=_LABELS,
            ),
            "events_per_s": GaugeMetricFamily(
                "fabric_partition_events_per_second",
                "Records applied per second, over the last second",
                labels=_LABELS,
            ),
            "rows": GaugeMetricFamily(
                "fabric_partition_rows",
                "Rows in the partition's store (RocksDB's estimate)",
                labels=_LABELS,
            ),
        }
        counters = {
            "applied": CounterMetricFamily(
                "fabric_partition_events_applied", "Records that changed the store", labels=_LABELS
            ),
            "skipped": CounterMetricFamily(
                "fabric_partition_events_skipped",
                "Records that changed nothing (tombstones, pre-truncate)",
                labels=_LABELS,
            ),
            "dead_letters": CounterMetricFamily(
                "fabric_partition_dead_letters",
                "Records sent to the dead-letter topic",
                labels=_LABELS,
            ),
            "routing_mismatches": CounterMetricFamily(
                "fabric_partition_routing_mismatches",
                "Records whose rebuilt key does not route to their partition",
                labels=_LABELS,
            ),
            "unresolved_toast": CounterMetricFamily(
                "fabric_partition_unresolved_toast",
                "Updates whose unchanged TOAST value had no stored value to keep",
                labels=_LABELS,
            ),
            "routing_checked": CounterMetricFamily(
                "fabric_partition_routing_checked",
                "Records whose routing was checked",
                labels=_LABELS,
            ),
        }
        for part in status.partitions:
            labels = [status.instance_id, part.topic, str(part.partition), part.table]
            gauges["lag"].add_metric(labels, part.lag)
            gauges["applied_offset"].add_metric(labels, part.position - 1)
            gauges["active"].add_metric(labels, 1 if part.state == "ACTIVE" else 0)
            gauges["events_per_s"].add_metric(labels, part.events_per_s)
            gauges["rows"].add_metric(labels, part.rows)
            for name, family in counters.items():
                family.add_metric(labels, getattr(part, name))
        yield from gauges.values()
        yield from counters.values()
        visible = HistogramMetricFamily(
            "fabric_commit_to_visible_seconds",
            "Time from a change's commit in Postgres to its row being visible to lookups",
            labels=["instance", "table"],
        )
        for table, freshness in status.freshness_by_table().items():
            cumulative, buckets = 0, []
            for bound, count in zip((*BOUNDS_MS, math.inf), freshness.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == math.inf else str(bound / 1000), cumulative))
            visible.add_metric(
                [status.instance_id, table], buckets, sum_value=freshness.sum_ms / 1000
            )
        yield visible


def serve_metrics(status: Callable[[], InstanceStatus], host: str, port: int) -> CollectorRegistry:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; raises :class:`PortInUseError`."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(status))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise PortInUseError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror}); choose another port with "
            "FABRIC_METRICS_PORT or --metrics-port"
        ) from None
    return registry

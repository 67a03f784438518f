"""Prometheus metrics of an instance, read from its status at scrape time.

Nothing on the apply path touches a metric: the collector turns :meth:`Materializer.status` into
gauges and counters when Prometheus scrapes, so the cost is per scrape, not per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from fabric.errors import PortInUseError
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

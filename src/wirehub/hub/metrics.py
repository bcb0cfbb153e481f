"""Prometheus metrics of a hub, read from its own counters when scraped.

``Hub(metrics=True)`` (or ``wirehub serve --metrics``) serves ``GET /metrics``
in the Prometheus text format, written by ``prometheus-client``. Nothing is
counted for the metrics alone on the fan-out path: a collector reads
``hub.stats`` (the counters ``/healthz`` reports too), the peers, the rooms
and the broker's health at scrape time. Only durations need a measurement
per call: each handler call and each publish to the broker adds one
``perf_counter`` pair and a bucket increment (``Timings``, ~0.15 µs where
``prometheus_client.Histogram.observe`` takes ~1.5 µs under its lock).

Under ``wirehub serve --workers N`` each worker labels its samples
``worker="<slot>"`` and also listens on a private Unix socket; the worker
that answers a scrape asks the others over their sockets and answers for
all of them, so one scrape covers every worker (``wirehub_worker_up`` says
which ones answered). See docs/operations.md for every metric and what to
alert on.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from wirehub.http.messages import Request, Response
from wirehub.http.routing import Router
from wirehub.hub.handlers import HandlerSpec
from wirehub.hub.node import Node
from wirehub.hub.report import connections

try:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.process_collector import ProcessCollector
except ImportError as exc:  # pragma: no cover - exercised by hand without the extra
    raise ImportError("metrics need prometheus-client: pip install 'wirehub[metrics]'") from exc

__all__ = ["BUCKETS", "METRICS_PATH", "Metrics", "Timings", "Workers"]

logger = logging.getLogger("wirehub.metrics")

METRICS_PATH = "/metrics"

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of the duration histograms, then +Inf."""

# hub.stats counter -> the ``reason`` of wirehub_rejected_handshakes_total.
REFUSALS = {
    "refused_origin": "origin",
    "refused_capacity": "capacity",
    "refused_rate": "rate",
    "refused_auth": "auth",
}

SCRAPE_TIMEOUT = 2.0  # how long a worker waits for each sibling's metrics


class Timings:
    """A histogram of durations with fixed ``BUCKETS``: a bucket increment per call."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        # bisect_left: a duration equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """The ``(le, count)`` pairs of the exposition format, +Inf last."""
        total = 0
        pairs = []
        for bound, count in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            total += count
            pairs.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return pairs


@dataclasses.dataclass(frozen=True)
class Workers:
    """Where this process stands among the workers of ``wirehub serve --workers N``."""

    slot: int
    count: int
    directory: Path  # private to the parent and its workers

    def socket(self, slot: int) -> Path:
        """The Unix socket on which worker ``slot`` answers for itself."""
        return self.directory / f"worker-{slot}.sock"


H = TypeVar("H", bound=Callable[..., Any])


class Metered(Protocol):
    """What the metrics read and hook into (``Hub`` implements it)."""

    node: Node
    router: Router
    metrics: Metrics | None

    def on_startup(self, hook: H) -> H: ...

    def on_shutdown(self, hook: H) -> H: ...


class Metrics:
    """The metrics of one hub; ``hub.metrics`` once created.

    ``port``: serve ``/metrics`` on that port only (with ``/healthz``), not
    on the application's; the server opens it (``wirehub serve --metrics-port``).
    ``registry`` is a ``prometheus_client.CollectorRegistry``: register your
    own metrics in it to have them served at the same address.
    """

    def __init__(self, hub: Metered, *, port: int | None = None) -> None:
        self.hub = hub
        self.port = port
        self.workers: Workers | None = None  # set in each forked worker
        self.handlers: dict[str, Timings] = {}
        self.publish = Timings()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_HubCollector(self))
        ProcessCollector(registry=self.registry)
        self.router = Router()
        """The routes served on ``port`` (and nothing else)."""
        self.router.add_http(METRICS_PATH, {"GET"}, self.scrape)
        self.local_router = Router()
        """The routes of a worker's private socket: its own metrics only."""
        self.local_router.add_http(METRICS_PATH, {"GET"}, self.scrape_local)
        self._unwrap: list[Callable[[], None]] = []
        hub.metrics = self
        if port is None:
            hub.router.add_http(METRICS_PATH, {"GET"}, self.scrape)
        hub.on_startup(self.start)
        hub.on_shutdown(self.stop)

    # -- timing, installed while the hub runs -------------------------------------

    def start(self) -> None:
        """Time every registered handler and the broker's ``publish`` (a startup hook)."""
        if self._unwrap:
            return
        handlers = self.hub.node.handlers
        original = dict(handlers)
        for event, spec in original.items():
            timings = self.handlers.setdefault(event, Timings())
            handlers[event] = dataclasses.replace(spec, func=_timed(spec, timings))
        self._unwrap.append(lambda: handlers.update(original))
        broker = self.hub.node.broker
        try:
            # An attribute of this broker object, which shadows the method:
            # brokers stay unaware of metrics, and nothing is timed when off.
            setattr(broker, "publish", _timed_call(broker.publish, self.publish))  # noqa: B010
        except AttributeError:  # a broker with __slots__: publish times are not measured
            logger.warning("cannot time %s.publish: no publish metrics", type(broker).__name__)
        else:
            self._unwrap.append(lambda: delattr(broker, "publish"))

    def stop(self) -> None:
        """Undo ``start``."""
        while self._unwrap:
            self._unwrap.pop()()

    # -- scraping --------------------------------------------------------------------

    def scrape_local(self, request: Request) -> Response:
        """This process's metrics (a worker's private socket answers with these)."""
        return _exposition(self.families())

    async def scrape(self, request: Request) -> Response:
        """``GET /metrics``: this process's metrics, and every other worker's under workers."""
        if self.workers is None:
            return self.scrape_local(request)
        workers = self.workers
        others = [slot for slot in range(workers.count) if slot != workers.slot]
        texts = await asyncio.gather(*(_fetch(workers.socket(slot)) for slot in others))
        up = GaugeMetricFamily(
            "wirehub_worker_up", "1 if the worker answered this scrape", labels=["worker"]
        )
        up.add_metric([str(workers.slot)], 1)
        merged: dict[str, Metric] = {}
        _merge(merged, self.families())
        for slot, text in zip(others, texts, strict=True):
            up.add_metric([str(slot)], 0 if text is None else 1)
            if text is not None:
                _merge(merged, text_string_to_metric_families(text))
        return _exposition([*merged.values(), up])

    def families(self) -> list[Metric]:
        """This process's metric families, labelled with its worker slot under workers."""
        families = list(self.registry.collect())
        if self.workers is None:
            return families
        slot = str(self.workers.slot)
        for family in families:
            family.samples = [
                sample._replace(labels={**sample.labels, "worker": slot})
                for sample in family.samples
            ]
        return families


class _HubCollector:
    """Reads the hub's counters and state at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        hub = self.metrics.hub
        node = hub.node
        stats = node.stats
        yield _gauge_by(
            "wirehub_connections",
            "Open WebSocket and fallback connections, by transport",
            "transport",
            connections(node, hub.router),
        )
        yield _gauge("wirehub_rooms", "Rooms with members on this process", len(node.rooms.by_name))
        yield _counter(
            "wirehub_messages_received", "Messages received from peers", stats["messages_in"]
        )
        yield _counter(
            "wirehub_messages_sent",
            "Messages sent to peers: deliveries plus replies and direct sends",
            stats["deliveries"] + stats["messages_out"],
        )
        yield _counter(
            "wirehub_deliveries", "Events delivered to peers by fan-out", stats["deliveries"]
        )
        yield _counter(
            "wirehub_slow_consumers",
            "Peers closed (4008) for not reading fast enough",
            stats["slow_consumers"],
        )
        yield _counter(
            "wirehub_dropped_deliveries",
            "Deliveries skipped because the receiver was too far behind",
            stats["dropped"],
        )
        yield _counter(
            "wirehub_gaps",
            "Gap notices sent: room events members may have missed (history could not fill)",
            stats["gaps"],
        )
        yield _counter(
            "wirehub_history_fills",
            "Holes in a room's stream filled from history before delivery",
            stats["filled"],
        )
        yield _counter(
            "wirehub_errors",
            "Error replies sent to peers (bad messages, failed handlers)",
            stats["errors"],
        )
        yield _counter(
            "wirehub_rate_limited", "Messages refused by a rate limit", stats["rate_limited"]
        )
        rejected = CounterMetricFamily(
            "wirehub_rejected_handshakes",
            "WebSocket handshakes refused before the upgrade, by reason",
            labels=["reason"],
        )
        for key, reason in REFUSALS.items():
            rejected.add_metric([reason], stats[key])
        yield rejected
        handlers = HistogramMetricFamily(
            "wirehub_handler_seconds", "Time event handlers take, by event", labels=["event"]
        )
        for event, timings in sorted(self.metrics.handlers.items()):
            handlers.add_metric([event], timings.cumulative(), timings.sum)
        yield handlers
        publish = HistogramMetricFamily(
            "wirehub_broker_publish_seconds", "Time a publish to the broker takes"
        )
        publish.add_metric([], self.metrics.publish.cumulative(), self.metrics.publish.sum)
        yield publish
        health = node.broker.health()
        up = GaugeMetricFamily(
            "wirehub_broker_up", "1 while the broker carries messages", labels=["broker"]
        )
        up.add_metric([str(health.get("broker", "?"))], 1 if health.get("ok", True) else 0)
        yield up
        yield _counter(
            "wirehub_broker_reconnects",
            "Times the broker reconnected after losing its server",
            health.get("reconnects", 0),
        )


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _gauge_by(name: str, documentation: str, label: str, values: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _timed(spec: HandlerSpec, timings: Timings) -> Any:
    func = spec.func
    if spec.is_async:
        return _timed_call(func, timings)

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return func(*args)
        finally:
            timings.observe(time.perf_counter() - start)

    return timed


def _timed_call(
    func: Callable[..., Awaitable[Any]], timings: Timings
) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return await func(*args)
        finally:
            timings.observe(time.perf_counter() - start)

    return timed


def _merge(merged: dict[str, Metric], families: Iterable[Metric]) -> None:
    """Add ``families``' samples to the families of the same name in ``merged``."""
    for family in families:
        known = merged.get(family.name)
        if known is None:
            merged[family.name] = family
        else:
            known.samples.extend(family.samples)


class _Families:
    """A collector yielding given families (``generate_latest`` takes any collector)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _exposition(families: list[Metric]) -> Response:
    body = generate_latest(_Families(families))
    return Response(200, body, CONTENT_TYPE_LATEST)


async def _fetch(path: Path) -> str | None:
    """A sibling worker's own metrics over its socket; None if it does not answer in time."""
    writer = None
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT):
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n")
            reply = await reader.read()
    except (OSError, TimeoutError) as exc:
        logger.warning("worker socket %s did not answer a scrape: %r", path.name, exc)
        return None
    finally:
        if writer is not None:
            writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        logger.warning("worker socket %s answered a scrape with %r", path.name, head[:40])
        return None
    return body.decode()

"""``GET /metrics``: Prometheus text read back with prometheus-client's own parser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import http, serve
from tests.hub.wire import WireClient
from wirehub import Hub, Peer
from wirehub.hub.metrics import BUCKETS, Timings, Workers

ROOT = Path(__file__).resolve().parents[2]


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: ``(name, labels) -> value``."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await http(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.status == 200, response
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.body.decode())


def chat_hub(**kwargs: Any) -> Hub:
    hub = Hub(metrics=True, **kwargs)

    @hub.on("say")
    async def say(peer: Peer, data: Any) -> bool:
        await hub.to("lobby").emit("said", data)
        return True

    return hub


def test_timings_fill_cumulative_buckets() -> None:
    """A duration lands in the first bucket whose bound is not below it; +Inf counts all."""
    timings = Timings()
    for seconds in (BUCKETS[0], BUCKETS[0] * 1.5, 100.0):
        timings.observe(seconds)
    pairs = dict(timings.cumulative())
    assert pairs[repr(BUCKETS[0])] == 1
    assert pairs[repr(BUCKETS[1])] == 2
    assert pairs[repr(BUCKETS[-1])] == 2
    assert pairs["+Inf"] == 3 and timings.count == 3


async def test_metrics_are_off_by_default() -> None:
    """Without metrics=True, /metrics is not a route."""
    async with serve(Hub()) as s:
        response = await http(s.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.status == 404


async def test_metrics_count_connections_messages_deliveries_and_handlers() -> None:
    """After two peers chat in a room, each metric the issue lists has the values they caused."""
    async with serve(chat_hub()) as s:
        url = s.ws("/ws")
        async with await WireClient.open(url) as a, await WireClient.open(url) as b:
            await a.join("lobby")
            await b.join("lobby")
            assert (await a.call("say", "hi"))["data"] is True
            assert (await b.recv())["event"] == "said"
            samples = await scrape(s.port)
        none: frozenset[tuple[str, str]] = frozenset()
        assert samples[("wirehub_connections", frozenset({("transport", "websocket")}))] == 2
        assert samples[("wirehub_rooms", none)] == 1
        assert samples[("wirehub_messages_received_total", none)] == 3  # 2 joins, 1 emit
        assert samples[("wirehub_deliveries_total", none)] == 2  # "said" to a and b
        # welcomes (2), join acks (2), the emit's ack (1), plus the 2 deliveries
        assert samples[("wirehub_messages_sent_total", none)] == 7
        assert samples[("wirehub_handler_seconds_count", frozenset({("event", "say")}))] == 1
        assert samples[("wirehub_broker_publish_seconds_count", none)] == 1
        assert samples[("wirehub_broker_up", frozenset({("broker", "memory")}))] == 1
        assert samples[("wirehub_slow_consumers_total", none)] == 0
        assert any(name == "process_resident_memory_bytes" for name, _ in samples)


async def test_rejected_handshakes_are_counted_by_reason() -> None:
    """A cross-origin handshake refused with 403 counts under reason="origin"."""
    async with serve(chat_hub()) as s:
        response = await http(
            s.port,
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n",
        )
        assert response.status == 403
        samples = await scrape(s.port)
        reasons = {
            dict(labels)["reason"]: value
            for (name, labels), value in samples.items()
            if name == "wirehub_rejected_handshakes_total"
        }
        assert reasons == {"origin": 1, "capacity": 0, "rate": 0, "auth": 0}


async def test_a_worker_that_does_not_answer_is_reported_down(tmp_path: Path) -> None:
    """Under workers, a scrape has its own samples, worker_up 0 for a silent sibling, and
    every metric the Grafana dashboard in docs/deploy queries."""
    hub = chat_hub()
    assert hub.metrics is not None
    hub.metrics.workers = Workers(slot=0, count=2, directory=tmp_path)  # no worker-1.sock
    async with serve(hub) as s:
        samples = await scrape(s.port)
    assert samples[("wirehub_worker_up", frozenset({("worker", "0")}))] == 1
    assert samples[("wirehub_worker_up", frozenset({("worker", "1")}))] == 0
    assert samples[("wirehub_rooms", frozenset({("worker", "0")}))] == 0
    dashboard = json.loads((ROOT / "docs" / "deploy" / "grafana-wirehub.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(?:wirehub|process)_\w+", target["expr"])
    }
    assert queried <= {name for name, _ in samples}, "the Grafana dashboard queries unknown metrics"

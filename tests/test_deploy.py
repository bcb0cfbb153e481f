"""docs/deploy/nginx.conf, run for real: nginx in front of two wirehub nodes sharing Redis."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.nodes import make_hub
from tests.conftest import UNIT, http, serve
from tests.hub.fallback_wire import PollClient
from tests.hub.wire import WireClient
from tests.services import free_port, wait_listening
from wirehub import Hub
from wirehub.brokers.redis import RedisBroker

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "docs" / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

MAIN = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/wirehub.conf;
}}
"""


def site(nodes: list[int], port: int) -> str:
    """docs/deploy/nginx.conf with our nodes and a loopback port in place of the examples."""
    text = CONF.read_text()
    examples = re.findall(r"server 10\.0\.0\.\d+:8000", text)
    assert len(examples) == len(nodes), examples
    for example, node in zip(examples, nodes, strict=True):
        text = text.replace(example, f"server 127.0.0.1:{node}")
    assert "listen 80;" in text
    return text.replace("listen 80;", f"listen 127.0.0.1:{port};")


@contextlib.contextmanager
def nginx(nodes: list[int], conf: Callable[[list[int], int], str] = site) -> Iterator[int]:
    """nginx (foreground, its files in a temporary directory) proxying to ``nodes``;
    ``conf(nodes, port)`` is its server configuration (docs/deploy/nginx.conf by default)."""
    with tempfile.TemporaryDirectory(prefix="wirehub-nginx-") as directory:
        port = free_port()
        Path(directory, "wirehub.conf").write_text(conf(nodes, port))
        Path(directory, "nginx.conf").write_text(MAIN.format(dir=directory))
        command = [NGINX, "-p", directory, "-c", f"{directory}/nginx.conf", "-g", "daemon off;"]
        process = subprocess.Popen(command, stderr=subprocess.PIPE)
        try:
            wait_listening(port, process)
            yield port
        finally:
            process.send_signal(signal.SIGTERM)  # fast shutdown: nothing left to finish
            try:
                process.wait(10 * UNIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            assert process.stderr is not None
            process.stderr.close()


def round_robin(nodes: list[int], port: int) -> str:
    """``site`` with nginx's default balancing (round robin) in place of ``least_conn``."""
    text = site(nodes, port)
    assert "    least_conn;\n" in text
    return text.replace("    least_conn;\n", "")


@contextlib.asynccontextmanager
async def behind_nginx(
    redis_url: str,
    prefix: str,
    hubs: list[Hub] | None = None,
    conf: Callable[[list[int], int], str] = site,
) -> AsyncIterator[str]:
    """Two nodes trusting nginx on 127.0.0.1, and nginx (configured by ``conf``) in front
    of them: yield its ws URL. The nodes' hubs are appended to ``hubs`` when given."""
    async with contextlib.AsyncExitStack() as stack:
        ports = []
        for name in ("node-a", "node-b"):
            broker = RedisBroker(redis_url, prefix=prefix)
            hub = make_hub(name, broker=broker, trusted_proxies=["127.0.0.1"])
            if hubs is not None:
                hubs.append(hub)
            ports.append((await stack.enter_async_context(serve(hub))).port)
        port = stack.enter_context(nginx(ports, conf))
        yield f"ws://127.0.0.1:{port}/ws"


async def whoami(client: WireClient) -> dict[str, Any]:
    answer: dict[str, Any] = (await client.call("whoami"))["data"]
    return answer


async def test_clients_on_different_nodes_chat_through_nginx(redis_url: str, prefix: str) -> None:
    """Through nginx, clients land on both nodes (no stickiness) and talk across them."""
    async with behind_nginx(redis_url, prefix) as url:
        clients = [await WireClient.open(url) for _ in range(4)]
        try:
            nodes = [(await whoami(c))["node"] for c in clients]
            assert set(nodes) == {"node-a", "node-b"}, nodes
            sender = clients[0]
            await sender.call_excluded("say", "through nginx")  # its skip comes too
            for client in clients[1:]:
                message = await client.recv()
                assert (message["data"], message["room"]) == ("through nginx", "lobby")
            other = next(c for c, n in zip(clients, nodes, strict=True) if n != nodes[0])
            await other.call("say", "and back")
            assert (await sender.recv())["data"] == "and back"
        finally:
            for client in clients:
                await client.close()


@pytest.mark.parametrize("spoof", [None, "6.6.6.6"])
async def test_forwarded_for_reaches_the_hub(
    redis_url: str, prefix: str, spoof: str | None
) -> None:
    """A client on 127.0.0.2 is seen as 127.0.0.2 by the hub, even when it sends its own
    X-Forwarded-For: only nginx (127.0.0.1, trusted) is believed."""
    headers = {"X-Forwarded-For": spoof} if spoof else {}
    async with (
        behind_nginx(redis_url, prefix) as url,
        await WireClient.open(url, local_addr=("127.0.0.2", 0), additional_headers=headers) as c,
    ):
        assert (await whoami(c))["ip"] == "127.0.0.2"


async def test_plain_http_through_nginx(redis_url: str, prefix: str) -> None:
    """Plain HTTP (here /healthz) is proxied too, over the upstream keepalive connections."""
    async with behind_nginx(redis_url, prefix) as url:
        port = int(url.split(":")[2].split("/")[0])
        for _ in range(3):
            response = await http(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response.status == 200
            assert json.loads(response.body)["broker"]["state"] == "connected"


async def test_browser_origin_through_nginx_on_another_port(redis_url: str, prefix: str) -> None:
    """A page served through nginx on a port other than 80 may connect: its Origin carries
    the port, and nginx passes Host on with it ($http_host), so the origin check agrees."""
    async with behind_nginx(redis_url, prefix) as url:
        port = int(url.split(":")[2].split("/")[0])
        assert port != 80
        origin = {"Origin": f"http://127.0.0.1:{port}"}
        async with await WireClient.open(url, additional_headers=origin) as client:
            assert (await whoami(client))["node"] in {"node-a", "node-b"}


@pytest.mark.parametrize("conf", [site, round_robin], ids=["least-conn", "round-robin"])
@pytest.mark.parametrize("stream", [False, True], ids=["long-polling", "streaming"])
async def test_fallback_sessions_need_no_stickiness(
    redis_url: str, prefix: str, stream: bool, conf: Callable[[list[int], int], str]
) -> None:
    """Through nginx (the shipped least_conn, and round robin; no stickiness either way), a
    fallback session's polls and POSTs reach both nodes; the other node relays them to the
    owner, and the session chats with a WebSocket client as if it were one."""
    hubs: list[Hub] = []
    async with behind_nginx(redis_url, prefix, hubs, conf) as url:
        base = url.replace("ws://", "http://")
        async with (
            await PollClient.open(base, stream=stream) as poller,
            await WireClient.open(url) as ws,
        ):
            for n in range(5):  # several rounds: requests spread over both nodes
                await ws.call_excluded("say", f"to the fallback {n}")
                assert (await poller.recv())["data"] == f"to the fallback {n}"
                await poller.call_excluded("say", f"to the websocket {n}")
                assert (await ws.recv())["data"] == f"to the websocket {n}"
        assert [hub.stats["fallback_sessions"] for hub in hubs].count(1) == 1
        assert sum(hub.stats["fallback_relayed"] for hub in hubs) > 0

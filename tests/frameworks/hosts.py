"""Real ASGI servers in their own processes (uvicorn, hypercorn) on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import wirehub
from tests.services import UNIT, free_port, wait_listening
from wirehub import Client

ROOT = Path(__file__).resolve().parents[2]
STOP = 10.0  # seconds a stopping server gets before it is killed (a failure in itself)


@dataclasses.dataclass
class Host:
    """A running ASGI server process."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def stop(self) -> tuple[int, str]:
        """SIGTERM, then wait: the exit status and everything the server wrote to stderr."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, stderr = await asyncio.wait_for(self.process.communicate(), STOP)
        except TimeoutError:
            self.process.kill()
            _, stderr = await self.process.communicate()
        return self.process.returncode or 0, stderr.decode(errors="replace")


@contextlib.asynccontextmanager
async def uvicorn(
    app: str, *options: str, env: dict[str, str] | None = None
) -> AsyncIterator[Host]:
    """Run ``python -m uvicorn app`` from the repository root until the block ends."""
    port = free_port()
    # --no-access-log: stderr is read only at the end, keep it short.
    argv = ["uvicorn", app, "--port", str(port), "--no-access-log", *options]
    async with _serving(argv, port, env) as host:
        yield host


@contextlib.asynccontextmanager
async def hypercorn(app: str, *options: str) -> AsyncIterator[Host]:
    """Run ``python -m hypercorn app`` (h11 and wsproto: another ASGI server entirely)."""
    port = free_port()
    async with _serving(["hypercorn", app, "--bind", f"127.0.0.1:{port}", *options], port) as host:
        yield host


SERVERS = {"uvicorn": uvicorn, "hypercorn": hypercorn}


@contextlib.asynccontextmanager
async def _serving(
    argv: list[str], port: int, env: dict[str, str] | None = None
) -> AsyncIterator[Host]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *argv,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    host = Host(process, port)
    try:
        await asyncio.to_thread(wait_listening, port, None)
        yield host
    finally:
        if process.returncode is None:
            _, stderr = await host.stop()
            sys.stderr.write(stderr)  # shown when the test fails


async def post_json(url: str, data: object) -> tuple[int, object]:
    """POST ``data`` as JSON with the standard library's HTTP client (chunked answers too)."""

    def post() -> tuple[int, object]:
        request = urllib.request.Request(
            url, json.dumps(data).encode(), {"Content-Type": "application/json"}
        )
        with _OPENER.open(request, timeout=STOP) as response:
            return response.status, json.loads(response.read())

    return await asyncio.to_thread(post)


async def get(url: str) -> tuple[int, bytes]:
    """GET with the standard library's HTTP client (it undoes chunked transfer coding)."""

    def fetch() -> tuple[int, bytes]:
        with _OPENER.open(url, timeout=STOP) as response:
            return response.status, response.read()

    return await asyncio.to_thread(fetch)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy from the env


async def client_on_each_worker(
    url: str, event: str, key: str | None = None, workers: int = 2
) -> dict[int, Client]:
    """Connect until ``workers`` processes answered ``event`` with their pid (or a dict
    holding it under ``key``); close the extra connections. The caller closes the rest."""
    found: dict[int, Client] = {}
    extra: list[Client] = []
    try:
        async with asyncio.timeout(10 * UNIT):
            while len(found) < workers:
                client = await wirehub.connect(url)
                answer = await client.call(event)
                pid = int(answer if key is None else answer[key])
                if pid in found:
                    extra.append(client)
                else:
                    found[pid] = client
    finally:
        for client in extra:
            await client.close()
    return found

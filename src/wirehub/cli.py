"""The ``wirehub`` command: ``serve`` an app, ``connect`` to a WebSocket.

Only this module reads the command line and the environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import click

from wirehub.exceptions import ConfigError
from wirehub.hub.hub import Hub
from wirehub.server.logs import configure_logging

__all__ = ["load_app", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wirehub", prog_name="wirehub")
def main() -> None:
    """wirehub: a real-time WebSocket hub for Python."""


def load_app(target: str) -> Hub:
    """Import ``module:attr`` or ``path/to/file.py:attr`` and return the Hub.

    ``attr`` may be a ``Hub`` or a function returning one; it defaults to ``hub``.
    """
    location, _, attr = target.partition(":")
    attr = attr or "hub"
    if location.endswith(".py") or "/" in location:
        path = Path(location).resolve()
        if not path.is_file():
            raise ConfigError(f"no such file: {location}")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as exc:
            if exc.name and location.startswith(exc.name):
                raise ConfigError(
                    f"cannot import {location!r}: no module named {exc.name!r}"
                ) from None
            raise
    try:
        app: Any = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{location} has no attribute {attr!r}") from None
    if not isinstance(app, Hub) and callable(app):
        app = app()
    if not isinstance(app, Hub):
        raise ConfigError(f"{target} is a {type(app).__name__}, not a wirehub.Hub")
    return app


@main.command()
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, help="Port to bind (0: any free port).")
@click.option(
    "--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM)."
)
@click.option(
    "--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM)."
)
@click.option("--max-message-size", type=int, help="Largest message in bytes (default 1 MiB).")
@click.option("--no-compression", is_flag=True, help="Do not offer permessage-deflate.")
@click.option(
    "--shutdown-code",
    type=click.Choice(["1001", "1012"]),
    default="1001",
    show_default=True,
    help="Close code sent to clients on SIGTERM/SIGINT (1012: restarting).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, with peer, client and room fields.",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log each WebSocket handshake (status, path, duration) at INFO.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT); more than 1 needs --redis.",
)
@click.option(
    "--redis", "redis_url", metavar="URL", help="Redis backplane, e.g. redis://host:6379/0."
)
@click.option(
    "--redis-prefix",
    default="wirehub",
    show_default=True,
    help="Prefix of the Redis keys and channels (one per application).",
)
@click.option(
    "--redis-cluster", is_flag=True, help="URL is a Redis Cluster node (sharded pub/sub)."
)
@click.option("--metrics", is_flag=True, help="Serve Prometheus metrics at /metrics.")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0),
    help="Serve /metrics on this port only, not the application's (implies --metrics).",
)
@click.option(
    "--admin",
    is_flag=True,
    help="Serve the admin page at /admin; its key is the WIREHUB_ADMIN_KEY variable.",
)
def serve(
    app: str,
    host: str,
    port: int,
    certfile: str | None,
    keyfile: str | None,
    max_message_size: int | None,
    no_compression: bool,
    shutdown_code: str,
    log_level: str,
    log_format: str,
    access_log: bool,
    workers: int,
    redis_url: str | None,
    redis_prefix: str,
    redis_cluster: bool,
    metrics: bool,
    metrics_port: int | None,
    admin: bool,
) -> None:
    """Serve APP, given as module:attr or path/to/file.py:attr."""
    configure_logging(log_level, "json" if log_format == "json" else "text", access_log=access_log)
    try:
        hub = load_app(app)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if max_message_size is not None:
        hub.limits = dataclasses.replace(hub.limits, max_message_size=max_message_size)
    if no_compression:
        hub.compression = False
    context = None
    if certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
    elif keyfile:
        raise click.UsageError("--keyfile needs --certfile")
    if redis_url is not None:
        hub.broker = _redis_broker(redis_url, redis_prefix, redis_cluster)
    if metrics or metrics_port is not None:
        _enable_metrics(hub, metrics_port)
    if admin and hub.admin is None:
        _enable_admin(hub)
    if workers > 1:
        _serve_workers(hub, app, host, port, context, int(shutdown_code), workers)
        return

    def announce(server: Any) -> None:
        routes = ", ".join(sorted(hub.router.websocket)) or "none"
        click.echo(f"wirehub serving {app} on {server.url} (WebSocket routes: {routes})")
        _announce_metrics(hub, host)

    from wirehub.server.serve import run

    try:
        run(hub, host, port, ssl=context, shutdown_code=int(shutdown_code), announce=announce)
    except OSError as exc:  # typically: the address is already in use
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None


def _redis_broker(url: str, prefix: str, cluster: bool) -> Any:
    try:
        from wirehub.brokers.redis import RedisBroker
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        return RedisBroker(url, prefix=prefix, cluster=cluster)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--redis") from None


def _enable_metrics(hub: Hub, port: int | None) -> None:
    try:
        from wirehub.hub.metrics import Metrics
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    if hub.metrics is None:
        Metrics(hub, port=port)
    elif port is not None:
        raise click.UsageError(
            "--metrics-port: the app already serves /metrics (Hub(metrics=True)) on its port"
        )


def _enable_admin(hub: Hub) -> None:
    from wirehub.hub.admin import Admin

    key = os.environ.get("WIREHUB_ADMIN_KEY")
    if not key:
        raise click.UsageError("--admin needs the WIREHUB_ADMIN_KEY environment variable")
    try:
        hub.admin = Admin(hub, key)
    except ConfigError as exc:
        raise click.UsageError(f"WIREHUB_ADMIN_KEY: {exc}") from None


def _announce_metrics(hub: Hub, host: str) -> None:
    """Say where metrics on their own port are (the line after the serving one), then flush."""
    if hub.metrics is not None and hub.metrics.port is not None:
        name = f"[{host}]" if ":" in host else host
        click.echo(f"metrics on http://{name}:{hub.metrics.port}/metrics")
    sys.stdout.flush()


def _serve_workers(
    hub: Hub, app: str, host: str, port: int, context: ssl.SSLContext | None, code: int, n: int
) -> None:
    from wirehub.brokers.memory import MemoryBroker
    from wirehub.server.workers import run_workers

    if isinstance(hub.broker, MemoryBroker):
        raise click.UsageError(
            f"--workers {n} needs --redis URL: with the in-memory broker, each worker "
            "would only reach its own clients"
        )

    def announce(url: str) -> None:
        routes = ", ".join(sorted(hub.router.websocket)) or "none"
        click.echo(f"wirehub serving {app} on {url} with {n} workers (WebSocket routes: {routes})")
        _announce_metrics(hub, host)

    try:
        status = run_workers(
            hub, host, port, workers=n, ssl=context, shutdown_code=code, on_ready=announce
        )
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sys.exit(status)


@main.command()
@click.argument("url")
@click.option("-H", "--header", "headers", multiple=True, help="Extra header 'Name: value'.")
@click.option("-s", "--subprotocol", "subprotocols", multiple=True, help="Offer a subprotocol.")
@click.option("-k", "--insecure", is_flag=True, help="Do not verify the TLS certificate.")
@click.option(
    "-w",
    "--wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="After the end of input, print replies for this long, then close "
    "(default: until none came for 1 s).",
)
def connect(
    url: str,
    headers: tuple[str, ...],
    subprotocols: tuple[str, ...],
    insecure: bool,
    wait: float | None,
) -> None:
    """Open a WebSocket to URL: print what arrives, send each line typed.

    Exits 0 after a normal close (1000, 1001), 1 after any other, 2 when the
    connection cannot be opened.
    """
    from wirehub.terminal import run_terminal

    parsed: list[tuple[str, str]] = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep:
            raise click.UsageError(f"--header takes 'Name: value', not {header!r}")
        parsed.append((name.strip(), value.strip()))
    terminal = run_terminal(url, parsed, list(subprotocols), insecure=insecure, wait=wait)
    try:
        code = asyncio.run(terminal)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130  # the shell's convention for SIGINT
    sys.exit(code)


@main.command()
@click.argument("url")
@click.option(
    "--workloads",
    default="echo_latency,echo_throughput,fanout_1k,handshakes_seq,handshakes_50",
    show_default=True,
    help="Comma-separated; see bench/README.md for all of them.",
)
@click.option(
    "--dialect",
    type=click.Choice(["ws", "wh", "sio"]),
    default="ws",
    show_default=True,
    help="ws: the plain bench contract; wh: a wirehub event hub; sio: Socket.IO.",
)
@click.option("--server-pid", type=int, default=0, help="Server pid (same machine): adds CPU/op.")
@click.option("--quick", is_flag=True, help="Tiny sizes: check the set-up in seconds.")
def bench(url: str, workloads: str, dialect: str, server_pid: int, quick: bool) -> None:
    """Load-test the server at URL (ws://host:port) with the benchmark workloads.

    The server implements bench/README.md's contract: /echo echoes, /fanout
    subscribers (?role=sub&room=R) get what publishers (?role=pub) send. With
    --dialect wh, the same over a wirehub event hub's /ws (bench/servers/
    wirehub_events.py is one). Run the load generator on another core than the
    server, or on another machine; `make bench` compares servers side by side.
    """
    from urllib.parse import urlsplit

    from wirehub.loadgen.__main__ import run_workloads

    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname or not parts.port:
        raise click.UsageError("URL is ws://host:port (the load generator does not do TLS)")
    names = [name.strip() for name in workloads.split(",") if name.strip()]
    results = run_workloads(parts.hostname, parts.port, dialect, names, server_pid, quick)
    failed = False
    for result in results:
        failed |= not result.get("ok")
        click.echo(_bench_line(result))
    sys.exit(1 if failed else 0)


def _bench_line(result: dict[str, Any]) -> str:
    name = str(result["workload"])
    if not result.get("ok"):
        return f"{name:20} failed: {result.get('error')}"
    parts = [f"{result['ops_per_s']:>12,.0f} ops/s"]
    for key, label in (("p50_us", "p50"), ("p99_us", "p99")):
        if result.get(key) is not None:
            parts.append(f"{label} {result[key]:,.0f} µs")
    if result.get("kib_per_conn") is not None:
        parts.append(f"{result['kib_per_conn']:.1f} KiB/conn")
    if result.get("server_cpu_us_per_op") is not None:
        parts.append(f"server {result['server_cpu_us_per_op']:.1f} µs/op")
    if result.get("loadgen_saturated"):
        parts.append("(load generator saturated: a lower bound)")
    return f"{name:20} " + "  ".join(parts)

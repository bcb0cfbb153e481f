"""The ``wirehub`` command: ``serve`` an app, ``connect`` to a WebSocket.

Only this module reads the command line and the environment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
import os
import shlex
import ssl
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
        if _is_asgi_app(app):
            raise ConfigError(
                f"{target} is an ASGI application ({type(app).__name__}), not a wirehub.Hub:"
                f" serve it with uvicorn, the hub mounted in it (docs/frameworks.md),"
                f" or give wirehub serve the Hub"
            )
        if _needs_arguments(app):
            raise ConfigError(f"{target} needs arguments: give a Hub, or a function taking none")
        app = app()
    if not isinstance(app, Hub):
        raise ConfigError(f"{target} is a {type(app).__name__}, not a wirehub.Hub")
    return app


def _is_asgi_app(app: Any) -> bool:
    try:
        names = list(inspect.signature(app).parameters)
    except (TypeError, ValueError):
        return False
    return names == ["scope", "receive", "send"]


def _needs_arguments(factory: Any) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): just call it
        return False
    return any(
        p.default is p.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        for p in parameters
    )


@main.command()
@click.argument("app")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to bind (0: any free port).",
)
@click.option(
    "--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM)."
)
@click.option(
    "--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM)."
)
@click.option(
    "--max-message-size",
    type=click.IntRange(min=1),
    help="Largest message in bytes (default 1 MiB).",
)
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
@click.option(
    "--history-size",
    type=click.IntRange(min=0),
    help="Room events kept per room for recovery (default 100).",
)
@click.option(
    "--history-ttl",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="How long a room's history outlives its last event or member (default 3600).",
)
@click.option(
    "--reload",
    is_flag=True,
    help="Development: restart when a .py file under the app's folder changes "
    "(needs watchfiles: pip install 'wirehub[reload]').",
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
    history_size: int | None,
    history_ttl: float | None,
    reload: bool,
    metrics: bool,
    metrics_port: int | None,
    admin: bool,
) -> None:
    """Serve APP, given as module:attr or path/to/file.py:attr."""
    configure_logging(log_level, "json" if log_format == "json" else "text", access_log=access_log)
    if reload:
        _serve_reloading(app, workers)
        return
    try:
        hub = load_app(app)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if max_message_size is not None:
        hub.limits = dataclasses.replace(hub.limits, max_message_size=max_message_size)
    if no_compression:
        hub.compression = False
    context = _tls_context(certfile, keyfile)
    history = {"history_size": history_size, "history_ttl": history_ttl}
    history = {name: value for name, value in history.items() if value is not None}
    if redis_url is not None:
        hub.broker = _redis_broker(redis_url, redis_prefix, redis_cluster, **history)
    else:
        for name, value in history.items():  # the in-memory broker (or the app's own)
            setattr(hub.broker, name, value)
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


def _tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The server's TLS context, or a one-line error naming what is wrong with the files."""
    if certfile is None:
        if keyfile is not None:
            raise click.UsageError("--keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        pem = Path(certfile).read_bytes()
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            problem = f"{certfile} is not a certificate in PEM format"
        elif "KEY_VALUES_MISMATCH" in str(exc):
            problem = f"the key in {keyfile or certfile} is not the key of {certfile}'s certificate"
        elif keyfile is None and b"PRIVATE KEY-----" not in pem:
            problem = f"{certfile} holds no private key: give it with --keyfile"
        else:
            problem = f"cannot load {certfile} and {keyfile or 'its key'}: {exc.reason or exc}"
        raise click.ClickException(f"TLS: {problem}") from None
    return context


def _redis_broker(url: str, prefix: str, cluster: bool, **history: Any) -> Any:
    try:
        from wirehub.brokers.redis import RedisBroker
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        broker = RedisBroker(url, prefix=prefix, cluster=cluster, **history)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--redis") from None
    _check_redis(url, cluster)
    return broker


def _check_redis(url: str, cluster: bool) -> None:
    """Fail at start when Redis does not answer (once serving, outages are survived).

    Otherwise workers would start each on its own, unable to reach one another.
    """
    import redis
    from redis.cluster import RedisCluster
    from redis.exceptions import RedisClusterException  # not a RedisError

    try:
        factory = RedisCluster if cluster else redis.Redis
        client = factory.from_url(url, socket_connect_timeout=5.0, socket_timeout=5.0)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        hint = ""
        if "authenticated" in str(exc) or "NOAUTH" in str(exc):
            hint = " (this Redis wants a password: redis://:PASSWORD@host:port)"
        raise click.ClickException(f"cannot reach Redis at {_redacted(url)}: {exc}{hint}") from None


def _redacted(url: str) -> str:
    """``url`` without its password (it may be in a log or a terminal's scrollback)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _serve_reloading(app: str, workers: int) -> None:
    """Run ``wirehub serve`` without --reload in a child, restarted when a .py file changes.

    The child is stopped with SIGINT (clients are told 1012, "restarting", so
    they reconnect to the new one). An app that fails to import is reported
    and tried again at the next change.
    """
    if workers > 1:
        raise click.UsageError("--reload runs one process: leave out --workers")
    try:
        from watchfiles import PythonFilter, run_process
    except ImportError:
        raise click.ClickException(
            "--reload needs watchfiles: pip install 'wirehub[reload]'"
        ) from None
    location = app.partition(":")[0]
    is_file = location.endswith(".py") or "/" in location
    folder = Path(location).resolve().parent if is_file else Path.cwd()
    argv = [a for a in sys.argv[1:] if a != "--reload"]
    if "--shutdown-code" not in argv:
        argv += ["--shutdown-code", "1012"]
    command = shlex.join([sys.executable, "-m", "wirehub", *argv])
    click.echo(f"wirehub --reload: watching {folder} for changes to .py files", err=True)

    def changed(changes: set[tuple[Any, str]]) -> None:
        names = sorted({Path(path).name for _, path in changes})
        click.echo(f"wirehub --reload: {', '.join(names)} changed; restarting", err=True)

    run_process(
        folder, target=command, target_type="command", callback=changed, watch_filter=PythonFilter()
    )


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


BENCH_WORKLOADS = "echo_latency,echo_throughput,fanout_1k,handshakes_seq,handshakes_50"


@main.command()
@click.argument("url")
@click.option(
    "--workloads",
    default=BENCH_WORKLOADS,
    show_default=True,
    help="Comma-separated, from: echo_latency, echo_throughput, fanout_1k, fanout_5k, "
    "fanout_10k, fanout_latency, many_rooms, idle_memory, idle_memory_deflate, "
    "handshakes_seq, handshakes_50, reconnect_storm, reconnect_storm_5k "
    "(reconnect_storm_restart* need bench/run.py, which restarts the server).",
)
@click.option(
    "--dialect",
    type=click.Choice(["ws", "wh", "sio"]),
    default="ws",
    show_default=True,
    help="ws: plain endpoints; wh: a wirehub event hub; sio: Socket.IO.",
)
@click.option("--server-pid", type=int, default=0, help="Server pid (same machine): adds CPU/op.")
@click.option("--quick", is_flag=True, help="Tiny sizes: check the set-up in seconds.")
def bench(url: str, workloads: str, dialect: str, server_pid: int, quick: bool) -> None:
    """Load-test the server at URL (ws://host:port) with the benchmark workloads.

    \b
    The server must answer like this (checked first):
    --dialect ws   /echo sends each message back; /fanout?role=sub&room=R
                   subscribers get every message /fanout?role=pub&room=R
                   publishers send (wirehub.broadcast does it)
    --dialect wh   a wirehub hub whose event "m" returns its data to peers
                   of /ws?ep=echo; peers of /ws?ep=fanout&role=sub&room=R
                   joined to room R, and "m" from role=pub emitted to it
    --dialect sio  a Socket.IO server with the same two endpoints (?ep=)

    Run the load generator on another core than the server (taskset), or on
    another machine, and compare servers in the same run.
    """
    from urllib.parse import urlsplit

    from wirehub.loadgen.contract import ContractError, check_contract
    from wirehub.loadgen.workloads import WORKLOADS

    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname or not parts.port:
        raise click.UsageError("URL is ws://host:port (the load generator does not do TLS)")
    names = [name.strip() for name in workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown workload {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(WORKLOADS)}",
            param_hint="--workloads",
        )
    fanout = any(name.startswith(("fanout", "many_rooms", "reconnect_storm")) for name in names)
    try:
        asyncio.run(check_contract(parts.hostname, parts.port, dialect, fanout))
    except ContractError as exc:
        raise click.ClickException(
            f"{url} does not answer like a bench target (--dialect {dialect}): {exc}; "
            "see wirehub bench --help"
        ) from None
    _run_bench(parts.hostname, parts.port, dialect, names, server_pid, quick)


def _run_bench(
    host: str, port: int, dialect: str, names: list[str], server_pid: int, quick: bool
) -> None:
    from wirehub.loadgen.__main__ import run_workloads

    results = run_workloads(host, port, dialect, names, server_pid, quick)
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
    if result.get("recover_all_s") is not None:  # reconnect_storm
        parts.append(
            f"all back in {result['recover_all_s']:.2f} s (median {result['recover_p50_s']:.2f})"
            f"  recovered {result['recovered']}, told of a gap {result['told_gap']},"
            f" unaware {result['reconnected_unaware']}"
            f"  arrivals peak/mean {result['arrival_peak_to_mean']:.1f}"
        )
    if result.get("server_cpu_us_per_op") is not None:
        parts.append(f"server {result['server_cpu_us_per_op']:.1f} µs/op")
    if result.get("loadgen_saturated"):
        parts.append("(load generator saturated: a lower bound)")
    return f"{name:20} " + "  ".join(parts)

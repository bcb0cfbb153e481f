"""CLI: ``python -m wirehub.loadgen --port N --server-pid P --workloads a,b [--dialect sio]``.

bench/run.py runs it pinned with ``taskset -c 1``; ``wirehub bench`` runs the
same workloads in-process against a server of yours.
Prints one JSON object per workload on stdout, in order, as each finishes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys

import uvloop

from .client import Target
from .workloads import WORKLOADS

__all__ = ["cli", "run_workloads"]

logger = logging.getLogger("wirehub.loadgen")


async def run_one(
    target: Target, pid: int, name: str, quick: bool, pid_file: str = ""
) -> dict[str, object]:
    spec = WORKLOADS[name]
    params = dict(spec.quick if quick else spec.full)
    if spec.restarts:
        params["pid_file"] = pid_file  # where the harness names the restarted server
    result: dict[str, object] = {"workload": name, "params": params}
    try:
        async with asyncio.timeout(spec.limit_s):
            result.update(await spec.fn(target, pid, params))
        result["ok"] = bool(result.get("complete", True))
        if not result["ok"]:
            result["error"] = f"incomplete: {result.get('delivered_pct')}% delivered"
    except Exception as exc:  # report, don't crash: the other workloads still run
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}".strip())
        logger.debug("workload %s failed", name, exc_info=True)  # cli() shows it
    return result


async def main(args: argparse.Namespace) -> None:
    target = Target(args.host, args.port, args.dialect)
    for i, name in enumerate(args.workloads.split(",")):
        if i:
            await asyncio.sleep(0.1)  # shared server: let it finish the previous closes
        result = await run_one(target, args.server_pid, name, args.quick, args.pid_file)
        print(json.dumps(result), flush=True)
        args.server_pid = int(str(result.get("server_pid_after", args.server_pid)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="loadgen", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True, help="for /proc CPU and RSS")
    parser.add_argument("--dialect", choices=["ws", "sio", "wh"], default="ws")
    parser.add_argument("--workloads", required=True, help=f"comma list of {sorted(WORKLOADS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument(
        "--pid-file",
        default="",
        help="where bench/run.py writes a restarted server's pid (reconnect_storm_restart*)",
    )
    return parser.parse_args()


def run_workloads(
    host: str, port: int, dialect: str, names: list[str], pid: int, quick: bool
) -> list[dict[str, object]]:
    """Run ``names`` one after the other against host:port; their results, in order."""
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; known: {sorted(WORKLOADS)}")
    _raise_fd_limit()

    async def run_all() -> list[dict[str, object]]:
        target = Target(host, port, dialect)
        return [await run_one(target, pid, name, quick) for name in names]

    return uvloop.run(run_all())


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # ~11k sockets in many_rooms


def cli() -> None:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
    _raise_fd_limit()
    uvloop.run(main(parse_args()))


if __name__ == "__main__":
    cli()

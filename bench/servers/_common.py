"""Shared plumbing for the peer servers: CLI flags, fd limit, endpoint routing.

Every peer implements the same contract (see bench/README.md):

* ``/echo``                        echo each message back (same frame type);
* ``/fanout?role=sub&room=R``      subscribe to room R (default room ``0``);
* ``/fanout?role=pub&room=R``      every message sent is broadcast to room R's
                                   subscribers (the publisher gets nothing back).
"""

from __future__ import annotations

import argparse
import resource
from urllib.parse import parse_qs, urlsplit

# Large listen backlog: the load generator opens thousands of connections in bursts.
BACKLOG = 4096


def make_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--compression",
        action="store_true",
        help="accept permessage-deflate when a client offers it (off by default)",
    )
    return parser


def parse_args(description: str) -> argparse.Namespace:
    return make_parser(description).parse_args()


def raise_fd_limit() -> None:
    """Lift the soft fd limit to the hard one: 10k idle connections need 10k fds."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def route(target: str) -> tuple[str, str, str]:
    """Split a request target: ``/fanout?role=pub&room=3`` -> ``("/fanout", "pub", "3")``."""
    parts = urlsplit(target)
    query = parse_qs(parts.query)
    return parts.path, query.get("role", ["sub"])[0], query.get("room", ["0"])[0]

"""The operations app with cluster presence in Redis: the presence tests' node in a process.

``WIREHUB_TEST_REDIS``, ``WIREHUB_TEST_PREFIX`` and ``WIREHUB_TEST_PRESENCE_TTL``
(seconds) say where and how fast; ``wirehub serve --redis`` gives the broker.
"""

from __future__ import annotations

import os

from tests.apps.ops import make_hub
from wirehub.brokers.redis_presence import RedisPresence

hub = make_hub(
    presence=RedisPresence(
        os.environ["WIREHUB_TEST_REDIS"],
        prefix=os.environ["WIREHUB_TEST_PREFIX"],
        ttl=float(os.environ["WIREHUB_TEST_PRESENCE_TTL"]),
    )
)

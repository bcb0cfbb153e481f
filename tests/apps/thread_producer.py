"""The trap of issue #14: a thread started at import time emitting with ``emit_threadsafe``.

Under ``--workers`` the thread stays in the supervisor, which serves nobody:
the supervisor says so at startup, and each emit raises ``ConfigError``.
"""

from __future__ import annotations

import logging
import threading
import time

from wirehub import Hub

hub = Hub()


def produce() -> None:
    while True:
        try:
            hub.emit_threadsafe("tick", time.time(), room="metrics")
        except Exception:
            logging.exception("tick not sent")
        time.sleep(0.05)


threading.Thread(target=produce, name="metrics-producer", daemon=True).start()

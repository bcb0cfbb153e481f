"""The Python client of the wirehub event protocol: ``Client`` (asyncio) and ``SyncClient``.

It imports only ``wirehub.protocol``, ``wirehub.codes``,
``wirehub.exceptions`` and ``websockets``: never the hub or the server.
"""

from wirehub.client.client import Client, connect
from wirehub.client.connection import IncompatibleServer, Welcome
from wirehub.client.events import EventInfo, Gap, PresenceChange, Reconnected
from wirehub.client.reconnect import Reconnect
from wirehub.client.session import State
from wirehub.client.sync import SyncClient

__all__ = [
    "Client",
    "EventInfo",
    "Gap",
    "IncompatibleServer",
    "PresenceChange",
    "Reconnect",
    "Reconnected",
    "State",
    "SyncClient",
    "Welcome",
    "connect",
]

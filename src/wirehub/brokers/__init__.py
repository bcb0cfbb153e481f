"""Brokers carry every cross-peer message: in memory by default, Redis to scale out."""

from wirehub.brokers.base import Broker, BrokerListener, History, Publication
from wirehub.brokers.memory import MemoryBroker

__all__ = ["Broker", "BrokerListener", "History", "MemoryBroker", "Publication"]

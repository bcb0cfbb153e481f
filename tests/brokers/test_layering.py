"""Who may import the concrete brokers: the hub knows only the in-memory one, the CLI the rest."""

from __future__ import annotations

from tests.test_imports import MODULES, imports_of, module_name

REDIS_MODULES = {
    "wirehub.brokers.redis",
    "wirehub.brokers.redis_presence",
    "wirehub.brokers.subscriber",
}
# Brokers stand on the protocol, configuration and exceptions only (DESIGN.md layers).
BROKER_MAY_IMPORT = ("wirehub.brokers", "wirehub.protocol", "wirehub.config", "wirehub.exceptions")


def importers_of(targets: set[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in MODULES:
        module = module_name(path)
        imported = {name for name, _, _ in imports_of(path.read_text(), module)}
        if imported & targets and module not in targets:
            found[module] = imported & targets
    return found


def test_only_the_cli_imports_the_redis_broker() -> None:
    """``RedisBroker`` is wired in by the CLI alone; the hub and the server never see it."""
    assert set(importers_of(REDIS_MODULES)) == {"wirehub.cli"}


def test_the_hub_imports_no_concrete_broker_but_memory() -> None:
    """The hub talks to the Broker protocol; its only concrete broker is the default one
    (and of presence stores, the in-memory one)."""
    for path in MODULES:
        module = module_name(path)
        if not module.startswith("wirehub.hub"):
            continue
        for name, _, _ in imports_of(path.read_text(), module):
            if name.startswith("wirehub.brokers."):
                assert name in (
                    "wirehub.brokers.base",
                    "wirehub.brokers.memory",
                    "wirehub.brokers.presence",  # the PresenceStore protocol and MemoryPresence
                ), (module, name)


def test_brokers_import_only_protocol_config_and_exceptions() -> None:
    """Broker modules import nothing of wirehub above the protocol."""
    for path in MODULES:
        module = module_name(path)
        if not module.startswith("wirehub.brokers"):
            continue
        for name, _, _ in imports_of(path.read_text(), module):
            assert name.startswith(BROKER_MAY_IMPORT), (module, name)

"""Event handlers: how they are called and how their data is validated.

A handler's second parameter's annotation is its data type. Data is decoded
straight from the raw JSON into that type with msgspec (Structs, dataclasses,
TypedDicts, builtins; ``object`` means any JSON, as ``Any`` does) or pydantic
(models, and types built from them such as ``list[Model]``, when installed),
so invalid data is refused with the path of the bad field and the handler
never runs. The decoder is built once, when the
handler is registered; a type neither library can validate is a
``ConfigError`` then, not an error per message.

A handler may be a coroutine function, a plain function, or a plain function
returning an awaitable (an async function under a decorator that is not
itself ``async``): ``run`` returns what it returns and the caller awaits
anything awaitable, so no result is ever mistaken for a value. A plain
function runs on the event loop, so it must not block: one holding the loop
longer than ``SLOW_HANDLER`` is named in a warning; one registered with
``blocking=True`` runs in the loop's default thread pool instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import re
import time
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from wirehub.codes import ErrorCode
from wirehub.exceptions import ConfigError, EventError

__all__ = ["SLOW_HANDLER", "Handler", "HandlerSpec"]

logger = logging.getLogger("wirehub.hub")

Handler = Callable[..., Any]

SLOW_HANDLER = 0.1
"""Seconds a plain (sync) handler may hold the event loop before it is named in a
warning: every other client of the process waited that long."""

WARN_EVERY = 60.0
"""Seconds between two warnings about the same slow handler."""

_NO_TYPE = object()


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and what it expects."""

    func: Handler
    takes_data: bool
    data_type: Any  # _NO_TYPE: plain JSON (Any)
    is_async: bool
    validate: Callable[[msgspec.Raw], Any] | None = None  # None: plain JSON
    blocking: bool = False  # run in the thread pool
    warned: list[float] = dataclasses.field(default_factory=lambda: [-WARN_EVERY])

    @classmethod
    def inspect(cls, func: Handler, *, data: bool = True, blocking: bool = False) -> HandlerSpec:
        """Read ``func``'s signature; ``data=False`` for lifecycle hooks (no data to validate).

        ``blocking``: ``func`` is a plain function that may block (file or
        database I/O, a sleep): it runs in the event loop's default thread
        pool. Raises ``ConfigError`` for a coroutine function with it.
        """
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            raise ConfigError(f"cannot read the signature of {func!r}") from None
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not 1 <= len(positional) <= 2:
            raise ConfigError(f"an event handler takes (peer) or (peer, data): {func!r}")
        data_type: Any = _NO_TYPE
        if len(positional) == 2:
            try:
                hints = typing.get_type_hints(func)
            except Exception as exc:
                raise ConfigError(f"cannot resolve the annotations of {func!r}: {exc}") from None
            data_type = hints.get(positional[1].name, _NO_TYPE)
            if data_type is Any or data_type is object:  # any JSON (binary data too)
                data_type = _NO_TYPE
        is_async = inspect.iscoroutinefunction(func)
        if blocking and is_async:
            raise ConfigError(f"blocking=True is for plain functions; {func!r} is async")
        validate = _validator(data_type, func) if data else None
        return cls(func, len(positional) == 2, data_type, is_async, validate, blocking)

    def run(self, peer: Any, data: Any = None) -> Any:
        """Call the handler with ``(peer, data)`` or ``(peer)``; return its result, or an
        awaitable of it (a coroutine, or the thread pool's future when ``blocking``)."""
        args = (peer, data) if self.takes_data else (peer,)
        if self.is_async:
            return self.func(*args)
        if self.blocking:
            call = functools.partial(self.func, *args)
            return asyncio.get_running_loop().run_in_executor(None, call)
        started = time.perf_counter()
        result = self.func(*args)
        held = time.perf_counter() - started
        if held > SLOW_HANDLER:
            self._slow(held)
        return result

    def _slow(self, held: float) -> None:
        now = time.monotonic()
        if now - self.warned[0] < WARN_EVERY:
            return
        self.warned[0] = now
        name = getattr(self.func, "__qualname__", repr(self.func))
        logger.warning(
            "handler %s held the event loop for %.0f ms: every other client waited; make it "
            "async, or register it with blocking=True to run it in a thread",
            name,
            held * 1000,
        )

    def decode(self, raw: msgspec.Raw, payload: bytes | None) -> Any:
        """The handler's data from the message; raises ``EventError(invalid_data)``."""
        if payload is not None:
            if self.data_type in (_NO_TYPE, bytes):
                return payload
            raise EventError(ErrorCode.INVALID_DATA, "this event does not take binary data")
        if not raw:
            raw = msgspec.Raw(b"null")
        if self.validate is None:
            return msgspec.json.decode(raw)
        return self.validate(raw)


def _validator(data_type: Any, func: Handler) -> Callable[[msgspec.Raw], Any] | None:
    """The function turning raw JSON into ``data_type``, built once per handler."""
    if data_type is _NO_TYPE:
        return None
    validate = getattr(data_type, "model_validate_json", None)
    if validate is not None:  # a pydantic model
        return functools.partial(_pydantic, validate)
    try:
        custom = _custom_types(msgspec.inspect.type_info(data_type))
        decoder = msgspec.json.Decoder(data_type)
    except TypeError as exc:
        custom, problem = [data_type], str(exc)
    else:
        problem = f"msgspec cannot decode {', '.join(sorted(map(repr, custom)))}"
    if custom:  # classes msgspec cannot build, e.g. list[SomePydanticModel]
        adapter = _pydantic_adapter(data_type)
        if adapter is None:
            raise ConfigError(f"cannot validate data of type {data_type!r} for {func!r}: {problem}")
        return functools.partial(_pydantic, adapter.validate_json)
    return functools.partial(_msgspec, decoder)


def _custom_types(info: msgspec.inspect.Type, seen: set[int] | None = None) -> list[Any]:
    """The classes in a type that msgspec would only decode with a ``dec_hook``."""
    seen = set() if seen is None else seen
    if id(info) in seen:  # recursive Structs
        return []
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        # msgspec decodes ``object`` as any JSON value (``Any``), only inspects it as custom
        return [] if info.cls is object else [info.cls]
    found: list[Any] = []
    for name in ("item_type", "key_type", "value_type"):
        child = getattr(info, name, None)
        if isinstance(child, msgspec.inspect.Type):
            found += _custom_types(child, seen)
    for child in getattr(info, "types", ()) or ():
        found += _custom_types(child, seen)
    for field in getattr(info, "fields", ()) or ():
        found += _custom_types(field.type, seen)
    return found


def _pydantic_adapter(data_type: Any) -> Any:
    try:
        import pydantic
    except ImportError:
        return None
    try:
        return pydantic.TypeAdapter(data_type)
    except Exception:
        return None


def _msgspec(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None


_MISSING = re.compile(r"Object missing required field `(.+)`")


def _invalid(text: str) -> EventError:
    # msgspec says "Expected `str`, got `int` - at `$.text`"
    message, _, path = text.partition(" - at ")
    path = path.strip("`") or "$"
    missing = _MISSING.fullmatch(message)
    if missing:  # point at the field itself, as pydantic does
        path = f"{path}.{missing.group(1)}"
    details = {"path": path, "error": message}
    return EventError(ErrorCode.INVALID_DATA, f"invalid data at {path}: {message}", details)


def _pydantic(validate: Callable[[bytes], Any], raw: msgspec.Raw) -> Any:
    try:
        return validate(bytes(raw))
    except ValueError as exc:  # pydantic.ValidationError subclasses ValueError
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            raise
        first = errors()[0]
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        details = {"path": path, "error": first["msg"]}
        raise EventError(
            ErrorCode.INVALID_DATA, f"invalid data at {path}: {first['msg']}", details
        ) from None

"""Event handlers: how they are called and how their data is validated.

A handler's second parameter's annotation is its data type. Data is decoded
straight from the raw JSON into that type with msgspec (Structs, dataclasses,
TypedDicts, builtins) or pydantic (models, when installed), so invalid data
is refused with the path of the bad field and the handler never runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from wirehub.codes import ErrorCode
from wirehub.exceptions import ConfigError, EventError

__all__ = ["Handler", "HandlerSpec"]

Handler = Callable[..., Any]

_NO_TYPE = object()


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and what it expects."""

    func: Handler
    takes_data: bool
    data_type: Any  # _NO_TYPE: plain JSON (Any)
    is_async: bool

    @classmethod
    def inspect(cls, func: Handler) -> HandlerSpec:
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
            if data_type is Any:
                data_type = _NO_TYPE
        return cls(func, len(positional) == 2, data_type, inspect.iscoroutinefunction(func))

    def decode(self, raw: msgspec.Raw, payload: bytes | None) -> Any:
        """The handler's data from the message; raises ``EventError(invalid_data)``."""
        if payload is not None:
            if self.data_type in (_NO_TYPE, bytes):
                return payload
            raise EventError(ErrorCode.INVALID_DATA, "this event does not take binary data")
        if not raw:
            raw = msgspec.Raw(b"null")
        if self.data_type is _NO_TYPE:
            return msgspec.json.decode(raw)
        validate = getattr(self.data_type, "model_validate_json", None)
        if validate is not None:  # a pydantic model
            return _pydantic(validate, raw)
        try:
            return msgspec.json.decode(raw, type=self.data_type)
        except msgspec.ValidationError as exc:
            raise _invalid(str(exc)) from None


def _invalid(text: str) -> EventError:
    # msgspec says "Expected `str`, got `int` - at `$.text`"
    message, _, path = text.partition(" - at ")
    details = {"path": path.strip("`") or "$", "error": message}
    return EventError(
        ErrorCode.INVALID_DATA, f"invalid data at {details['path']}: {message}", details
    )


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

"""The route table: exact paths and templates, one owner per path, longest static prefix first."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirehub import ConfigError, Response
from wirehub.http.routing import Router
from wirehub.http.static import StaticFiles


def ok(request: object) -> Response:
    return Response.text("ok")


def test_methods_are_upper_cased() -> None:
    """Route methods are stored upper-case whatever the caller wrote."""
    router = Router()
    router.add_http("/a", {"get", "Post"}, ok)
    assert router.http["/a"].methods == frozenset({"GET", "POST"})


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_duplicate_path_is_a_config_error(kind: str) -> None:
    """Registering the same path twice in one table raises ConfigError naming it."""
    router = Router()
    add = (
        (lambda p: router.add_http(p, {"GET"}, ok))
        if kind == "http"
        else (lambda p: router.add_websocket(p, object()))
    )
    add("/dup")
    with pytest.raises(ConfigError, match="/dup"):
        add("/dup")


def test_path_must_start_with_slash() -> None:
    """A route path without a leading slash is a ConfigError."""
    with pytest.raises(ConfigError, match="start with '/'"):
        Router().add_http("ws", {"GET"}, ok)


def test_same_path_may_be_http_and_websocket() -> None:
    """One path can have both an HTTP route and a WebSocket endpoint."""
    router = Router()
    router.add_http("/x", {"GET"}, ok)
    router.add_websocket("/x", object())
    assert "/x" in router.http and "/x" in router.websocket


def test_static_mounts_sorted_longest_prefix_first(tmp_path: Path) -> None:
    """Static mounts are tried longest prefix first whatever the order they were added in."""
    router = Router()
    for prefix in ("/", "/a/b", "/a"):
        router.add_static(StaticFiles(prefix, tmp_path))
    assert [s.prefix for s in router.static] == ["/a/b", "/a", "/"]


def test_templates_match_segments_and_paths() -> None:
    """``{name}`` takes one segment, ``{name:path}`` the rest; values are percent-decoded."""
    router = Router()
    router.add_http("/users/{id}", {"GET"}, ok)
    router.add_http("/files/{rest:path}", {"GET"}, ok)
    assert router.match_http("/users/42") == (router.http["/users/{id}"], {"id": "42"})
    assert router.match_http("/users/a%20b")[1] == {"id": "a b"}  # type: ignore[index]
    assert router.match_http("/files/a/b.txt")[1] == {"rest": "a/b.txt"}  # type: ignore[index]
    assert router.match_http("/users/42/x") is None
    assert router.match_http("/users/") is None


def test_exact_route_wins_over_a_template() -> None:
    """An exact path is preferred to a template that also matches it, whatever the order."""
    router = Router()
    router.add_websocket("/rooms/{name}", "template")
    router.add_websocket("/rooms/new", "exact")
    assert router.match_websocket("/rooms/new") == ("exact", {})
    assert router.match_websocket("/rooms/x") == ("template", {"name": "x"})
    assert router.match_websocket("/rooms/{name}") == ("template", {"name": "{name}"})


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/a/{id:int}", "unknown parameter type 'int'"),
        ("/a/{id}/{id}", "appears twice"),
        ("/a/{id", "a brace that is not a parameter"),
    ],
)
def test_bad_templates_are_config_errors(path: str, message: str) -> None:
    """A template the router cannot read is refused when it is added."""
    with pytest.raises(ConfigError, match=message):
        Router().add_http(path, {"GET"}, ok)

"""JWTAuth as a unit: algorithms, keys, claims, and the refusals it maps them to."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from tests.security.keys import SECRET, ec_key, public_pem, rsa_key, token
from wirehub.codes import CloseCode
from wirehub.exceptions import ConfigError, Reject
from wirehub.http.messages import Headers, Request
from wirehub.security.jwt import JWTAuth


def refused(auth: JWTAuth, value: str) -> Reject:
    with pytest.raises(Reject) as info:
        auth.verify(value)
    assert info.value.status == 401
    return info.value


def test_hs256_roundtrip_gives_the_claims() -> None:
    """A valid token's identity is its claims."""
    claims = JWTAuth(SECRET).verify(token({"name": "Ada", "rooms": ["chat:*"]}))
    assert claims["sub"] == "ada" and claims["name"] == "Ada" and claims["rooms"] == ["chat:*"]


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_asymmetric_algorithms(algorithm: str) -> None:
    """RS256 and ES256 verify with the public key; a token signed by another key is refused."""
    private = rsa_key() if algorithm == "RS256" else ec_key()
    auth = JWTAuth(public_pem(private), algorithms=[algorithm])
    assert auth.verify(token(key=private, algorithm=algorithm))["sub"] == "ada"
    other = JWTAuth(SECRET)
    refused(other, token(key=private, algorithm=algorithm))  # HS256 only: alg not allowed


def test_expired_token_maps_to_4004_and_others_to_4001() -> None:
    """Expired: TOKEN_EXPIRED (get a new one); anything else: UNAUTHORIZED (final)."""
    auth = JWTAuth(SECRET)
    assert refused(auth, token(ttl=-5)).code == CloseCode.TOKEN_EXPIRED
    bad = [
        token(key="another-secret-that-is-long-enough-for-hs256"),  # wrong signature
        token(ttl=None),  # no exp: required by default
        token({"nbf": time.time() + 60}),  # not yet valid
        token({"aud": "billing"}),  # an audience nobody configured
        "not.a.jwt",
        "",
        token() + "x",
        jwt.encode({"sub": "ada", "exp": time.time() + 60}, None, algorithm="none"),  # type: ignore[arg-type]
    ]
    for value in bad:
        exc = refused(auth, value)
        assert exc.code == CloseCode.UNAUTHORIZED and exc.reason == "invalid token"


def test_leeway_tolerates_clock_skew_and_extends_the_deadline() -> None:
    """With leeway, a just-expired token passes and ``expires_at`` includes the leeway."""
    auth = JWTAuth(SECRET, leeway=30)
    claims = auth.verify(token(ttl=-5))
    assert auth.expires_at(claims) == pytest.approx(claims["exp"] + 30)
    assert JWTAuth(SECRET).expires_at({"exp": True}) is None
    assert JWTAuth(SECRET).expires_at({}) is None


def test_issuer_and_audience() -> None:
    """``iss`` and ``aud`` must match when configured."""
    auth = JWTAuth(SECRET, issuer="https://login.example", audience="chat")
    good = token({"iss": "https://login.example", "aud": "chat"})
    assert auth.verify(good)["aud"] == "chat"
    refused(auth, token({"iss": "https://evil.example", "aud": "chat"}))
    refused(auth, token({"iss": "https://login.example", "aud": "billing"}))
    refused(auth, token({"aud": "chat"}))  # no iss


def test_issue_signs_what_verify_accepts() -> None:
    """``issue`` fills iat/exp/iss/aud so the same JWTAuth accepts the token."""
    auth = JWTAuth(SECRET, issuer="me", audience=["chat", "news"])
    claims = auth.verify(auth.issue({"sub": "bob"}, ttl=60))
    assert claims["sub"] == "bob" and claims["iss"] == "me"
    assert claims["exp"] - claims["iat"] == 60
    with pytest.raises(ConfigError):
        JWTAuth(public_pem(rsa_key()), algorithms=["RS256"]).issue({"sub": "x"})
    rs = JWTAuth(public_pem(rsa_key()), algorithms=["RS256"])
    assert rs.verify(rs.issue({"sub": "x"}, key=rsa_key()))["sub"] == "x"


def test_jwks_file_picks_the_key_by_kid(tmp_path: Path) -> None:
    """A JWKS file: the token's kid selects the key; an unknown kid is refused; reload works."""
    jwk_rsa = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key().public_key()))
    jwk_ec = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key().public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**jwk_rsa, "kid": "r1"}, {**jwk_ec, "kid": "e1"}]}))
    auth = JWTAuth(jwks_file=path, algorithms=["RS256", "ES256"])
    assert auth.verify(token(key=rsa_key(), algorithm="RS256", headers={"kid": "r1"}))
    assert auth.verify(token(key=ec_key(), algorithm="ES256", headers={"kid": "e1"}))
    refused(auth, token(key=rsa_key(), algorithm="RS256", headers={"kid": "nope"}))
    refused(auth, token(key=rsa_key(), algorithm="RS256", headers={"kid": "e1"}))
    path.write_text(json.dumps({"keys": [jwk_rsa]}))  # one key, no kid
    auth.reload()
    assert auth.verify(token(key=rsa_key(), algorithm="RS256"))
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        auth.reload()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": "short"},  # RFC 7518: an HS256 secret has 32+ bytes
        {"key": SECRET, "algorithms": ["none"]},
        {"key": SECRET, "algorithms": []},
        {"key": SECRET, "algorithms": ["HS256", "RS256"]},  # algorithm confusion
        {"key": 1234},
        {},  # neither key nor jwks_file
        {"key": SECRET, "jwks_file": "x.json"},
        {"jwks_file": "/nonexistent/jwks.json", "algorithms": ["RS256"]},
    ],
)
def test_unsafe_configurations_are_refused(kwargs: dict[str, object]) -> None:
    """Short secrets, ``none``, mixed families and missing keys fail at construction."""
    with pytest.raises(ConfigError):
        JWTAuth(**kwargs)  # type: ignore[arg-type]


def request(headers: list[tuple[str, str]], query: str = "") -> Request:
    return Request("GET", "/ws", query, Headers(headers), client=("127.0.0.1", 5000))


def test_token_sources_in_order() -> None:
    """Bearer header first, then the query parameter, then the cookie (when enabled)."""
    auth = JWTAuth(SECRET, cookie="session")
    assert auth.token_from(request([("Authorization", "Bearer abc")], "token=q")) == "abc"
    assert auth.token_from(request([("Authorization", "bearer  abc ")])) == "abc"
    assert auth.token_from(request([("Authorization", "Basic abc")], "token=q")) == "q"
    assert auth.token_from(request([("Cookie", "a=1; session=c")])) == "c"
    assert auth.token_from(request([("Cookie", 'session="unterminated; x')])) is None
    assert auth.token_from(request([])) is None
    no_query = JWTAuth(SECRET, query=None)
    assert no_query.token_from(request([], "token=q")) is None
    assert JWTAuth(SECRET).token_from(request([("Cookie", "session=c")])) is None


def test_as_a_plain_hook() -> None:
    """Called with a request, a JWTAuth returns the claims or raises Reject(401)."""
    auth = JWTAuth(SECRET)
    assert auth(request([("Authorization", f"Bearer {token()}")]))["sub"] == "ada"
    with pytest.raises(Reject) as info:
        auth(request([]))
    assert info.value.status == 401 and info.value.code == CloseCode.UNAUTHORIZED


def test_same_subject() -> None:
    """A refresh must keep the ``sub``."""
    auth = JWTAuth(SECRET)
    assert auth.same_subject({"sub": "a"}, {"sub": "a", "x": 1})
    assert not auth.same_subject({"sub": "a"}, {"sub": "b"})
    assert not auth.same_subject("a", "a")


def test_tokens_without_a_subject_are_never_the_same_subject() -> None:
    """With no ``sub`` on either side (or an empty one) there is nothing to compare: refused."""
    auth = JWTAuth(SECRET)
    assert not auth.same_subject({"name": "a"}, {"name": "a"})
    assert not auth.same_subject({"sub": ""}, {"sub": ""})
    assert not auth.same_subject({"sub": None}, {})

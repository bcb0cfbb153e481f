"""Keys and tokens for the security tests (generated once per session, never on disk)."""

from __future__ import annotations

import functools
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "a-test-secret-that-is-long-enough-for-hs256!"
"""An HMAC secret of 32+ bytes (RFC 7518 §3.2)."""


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def token(
    claims: dict[str, Any] | None = None,
    *,
    ttl: float | None = 60.0,
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A signed JWT with ``sub`` "ada" and ``exp`` in ``ttl`` seconds unless overridden."""
    payload: dict[str, Any] = {"sub": "ada"}
    if ttl is not None:
        payload["exp"] = time.time() + ttl
    payload.update(claims or {})
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)

"""``JWTAuth``: JSON Web Tokens (RFC 7519) checked with PyJWT.

::

    from wirehub.security.jwt import JWTAuth

    hub.authenticate(JWTAuth(SECRET, issuer="https://login.example.com", audience="chat"))

    @hub.on("connect")
    async def connect(peer, request):
        peer.info["name"] = peer.user["name"]      # the token's claims

The signature, ``exp`` (required by default), ``nbf``, ``iss`` and ``aud``
are checked, with ``leeway`` seconds of tolerated clock skew. An expired
token is refused with close code 4004 (TOKEN_EXPIRED: the client gets a new
one and reconnects), any other bad token with 4001 (UNAUTHORIZED: final);
before the upgrade, both are HTTP 401. Needs PyJWT: ``pip install 'wirehub[jwt]'``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from wirehub.codes import CloseCode
from wirehub.exceptions import ConfigError, Reject
from wirehub.security.auth import TokenAuth, subject

try:
    import jwt as pyjwt
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "wirehub.security.jwt needs PyJWT: pip install 'wirehub[jwt]' (PyJWT[crypto])"
    ) from exc

__all__ = ["JWTAuth"]

logger = logging.getLogger("wirehub.security")

_SYMMETRIC = {"HS256", "HS384", "HS512"}
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
               "EdDSA"}  # fmt: skip
_MIN_SECRET = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 §3.2: at least the hash size


class JWTAuth(TokenAuth):
    """Authenticate with JWTs; the identity (``peer.user``) is the dict of claims.

    ``key``: the HMAC secret (HS*), or the public key (PEM text or a
    ``cryptography`` key) for RS*/PS*/ES*/EdDSA. ``jwks_file``: instead of
    ``key``, a JSON Web Key Set file (``{"keys": [...]}``); the token's
    ``kid`` picks the key (``reload()`` re-reads the file after a rotation).
    ``algorithms``: the accepted ones, never ``none``, and not symmetric and
    asymmetric together (that mix enables algorithm-confusion attacks).
    ``issuer``/``audience``: required values of ``iss``/``aud`` when set (a
    token with an ``aud`` is refused when no audience is configured).
    ``require``: claims that must be present. The rest is ``TokenAuth``'s.
    """

    def __init__(
        self,
        key: str | bytes | Any | None = None,
        *,
        jwks_file: str | os.PathLike[str] | None = None,
        algorithms: Iterable[str] = ("HS256",),
        issuer: str | None = None,
        audience: str | Iterable[str] | None = None,
        leeway: float = 0.0,
        require: Iterable[str] = ("exp",),
        refresh_before: float = 30.0,
        query: str | None = "token",
        cookie: str | None = None,
        allow_message: bool = True,
    ) -> None:
        super().__init__(
            refresh_before=refresh_before, query=query, cookie=cookie, allow_message=allow_message
        )
        self.algorithms = list(algorithms)
        self._check_algorithms()
        if (key is None) == (jwks_file is None):
            raise ConfigError("JWTAuth takes a key or a jwks_file (exactly one)")
        if key is not None:
            self._check_secret(key)
        self.key = key
        self.jwks_file = jwks_file
        self._jwks: pyjwt.PyJWKSet | None = None
        if jwks_file is not None:
            self.reload()
        self.issuer = issuer
        self.audience = (
            audience if audience is None or isinstance(audience, str) else list(audience)
        )
        self.leeway = leeway
        self.require = list(require)

    def _check_algorithms(self) -> None:
        names = set(self.algorithms)
        unknown = names - _SYMMETRIC - _ASYMMETRIC
        if not names or unknown:
            raise ConfigError(f"JWTAuth: unsupported or unsafe algorithms {sorted(unknown)}")
        if names & _SYMMETRIC and names & _ASYMMETRIC:
            raise ConfigError("JWTAuth: do not accept symmetric and asymmetric algorithms together")

    def _check_secret(self, key: object) -> None:
        if not set(self.algorithms) <= _SYMMETRIC:
            return
        if not isinstance(key, str | bytes):
            raise ConfigError("an HMAC key (HS256…) is a str or bytes secret")
        size = len(key.encode() if isinstance(key, str) else key)
        needed = max(_MIN_SECRET[name] for name in self.algorithms)
        if size < needed:
            raise ConfigError(f"an HMAC secret for {self.algorithms} needs {needed}+ bytes")

    def reload(self) -> None:
        """Read ``jwks_file`` again (after the issuer rotated its keys)."""
        assert self.jwks_file is not None
        try:
            with open(self.jwks_file, encoding="utf-8") as file:
                self._jwks = pyjwt.PyJWKSet.from_dict(json.load(file))
        except (OSError, ValueError, pyjwt.PyJWTError) as exc:
            raise ConfigError(f"cannot load the JWKS file {self.jwks_file}: {exc}") from None

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self.key
        kid = pyjwt.get_unverified_header(token).get("kid")
        keys = self._jwks.keys
        if kid is None and len(keys) == 1:
            return keys[0]
        for jwk in keys:
            if jwk.key_id == kid:
                return jwk  # a PyJWK: PyJWT checks the token's alg against the key's type
        raise pyjwt.InvalidKeyError(f"no key with kid {kid!r}")

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises ``Reject`` (401; close code 4004 if expired, else 4001)."""
        try:
            claims: dict[str, Any] = pyjwt.decode(
                token,
                self._key_for(token),
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": self.require},
            )
        except pyjwt.ExpiredSignatureError:
            raise Reject(401, "token expired", code=CloseCode.TOKEN_EXPIRED) from None
        except (pyjwt.PyJWTError, TypeError, ValueError) as exc:  # a key of the wrong type
            # The reason stays generic (no oracle for forgers); the log says why.
            logger.info("token refused: %s", exc)
            raise Reject(401, "invalid token", code=CloseCode.UNAUTHORIZED) from None
        return claims

    def expires_at(self, identity: Any) -> float | None:
        """``exp`` plus the leeway (the last moment ``verify`` would still accept it)."""
        exp = identity.get("exp") if isinstance(identity, Mapping) else None
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return float(exp) + self.leeway
        return None

    def same_subject(self, old: Any, new: Any) -> bool:
        """A refreshed token must be for the same ``sub``; tokens without one cannot be
        compared, so their refresh is refused (PROTOCOL.md §13), as another subject's is."""
        return subject(old) is not None and subject(old) == subject(new)

    def issue(self, claims: Mapping[str, Any], *, ttl: float = 300.0, key: Any = None) -> str:
        """Sign a token with ``claims`` valid for ``ttl`` seconds (for a login route, or tests).

        Adds ``iat`` and ``exp``, and ``iss``/``aud`` when configured. Signs with
        ``key``, or with this authenticator's key when it is an HMAC secret.
        """
        now = int(time.time())
        payload: dict[str, Any] = {"iat": now, "exp": now + int(ttl), **claims}
        if self.issuer is not None:
            payload.setdefault("iss", self.issuer)
        if self.audience is not None:
            payload.setdefault("aud", self.audience)
        symmetric = set(self.algorithms) <= _SYMMETRIC
        signing_key = key if key is not None else self.key if symmetric else None
        if signing_key is None:
            raise ConfigError("JWTAuth.issue needs the signing key (key=...)")
        return pyjwt.encode(payload, signing_key, algorithm=self.algorithms[0])

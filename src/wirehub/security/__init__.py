"""Security: authentication, authorization from claims, origin checks and rate limits.

``JWTAuth`` lives in ``wirehub.security.jwt`` (it needs PyJWT, an optional
dependency: ``pip install 'wirehub[jwt]'``). See docs/security.md.
"""

from wirehub.security.auth import TokenAuth
from wirehub.security.claims import (
    claim_values,
    events_claim,
    has_role,
    matches,
    require_role,
    rooms_claim,
)
from wirehub.security.origins import OriginPolicy
from wirehub.security.ratelimit import Rate, RateLimits

__all__ = [
    "OriginPolicy",
    "Rate",
    "RateLimits",
    "TokenAuth",
    "claim_values",
    "events_claim",
    "has_role",
    "matches",
    "require_role",
    "rooms_claim",
]

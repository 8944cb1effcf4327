"""What a token says: the refresh endpoint's answer, whether a token can be sent as it is,
and the claims of a JWT. Pure functions, no I/O."""

from __future__ import annotations

import base64
import binascii
import math

import orjson

__all__ = ["access_token_in", "claim_number", "jwt_claims", "sendable"]


def access_token_in(body: bytes) -> str | None:
    """The access token in the refresh endpoint's answer (bare or under `data`), if any."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        document = document["data"]
    token = document.get("accessToken") if isinstance(document, dict) else None
    return token.strip() if isinstance(token, str) and token.strip() else None


def sendable(token: str) -> bool:
    """True for a token that can travel in a header as is: visible ASCII, no spaces."""
    return bool(token) and all("!" <= char <= "~" for char in token)


def jwt_claims(token: str) -> dict[str, object]:
    """The payload of a JWT (empty for anything else)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def claim_number(value: object) -> float | None:
    """A claim's value as a finite number of seconds, or None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None

"""Access tokens: issued for the one valid refresh token, valid for `ttl` simulated seconds."""

from __future__ import annotations

import secrets

__all__ = ["TokenStore"]


class TokenStore:
    """The refresh token the API accepts, and the access tokens it has handed out.

    Tokens come from `secrets`, not the seeded streams: they are credentials, and a client
    must never be able to predict one.
    """

    def __init__(self, refresh_token: str | None, ttl: float) -> None:
        self.refresh_token = refresh_token or secrets.token_urlsafe(32)
        self.ttl = ttl
        self.issued: set[str] = set()
        self._expiry: dict[str, float] = {}

    def exchange(self, refresh_token: object, now: float) -> str | None:
        """A new access token for a valid refresh token, else None."""
        if refresh_token != self.refresh_token:
            return None
        return self.issue(now)

    def issue(self, now: float) -> str:
        """A new access token, valid from `now` for `ttl` seconds."""
        token = secrets.token_urlsafe(32)
        self.issued.add(token)
        self._expiry[token] = now + self.ttl
        return token

    def is_valid(self, token: str, now: float) -> bool:
        """True for an issued access token that has not expired."""
        return now < self._expiry.get(token, -float("inf"))

    def __repr__(self) -> str:
        return f"TokenStore(issued={len(self.issued)}, ttl={self.ttl:g}s)"

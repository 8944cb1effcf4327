"""Masking secrets: raw, base64 (any alignment, either alphabet) and percent-encoded."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from async_poller.redact import MASK, redact, redact_value, remember

TOKEN = "redact-me+please/0123456789=="


@pytest.mark.parametrize(
    "shown",
    [
        TOKEN,
        base64.b64encode(TOKEN.encode()).decode(),
        base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("="),
        quote(TOKEN, safe=""),
        quote(TOKEN, safe="").lower(),
    ],
    ids=["raw", "base64", "urlsafe-base64", "percent", "percent-lower"],
)
def test_a_known_token_is_masked_in_simple_encodings(shown: str) -> None:
    """The token, its base64 (both alphabets) and its percent-encoding never survive."""
    remember(TOKEN)
    assert f"echo: {MASK}!" == redact(f"echo: {shown}!")


@pytest.mark.parametrize("prefix", [b"", b"u", b"us", b"user:"])
def test_a_token_inside_a_longer_base64_string_is_masked(prefix: bytes) -> None:
    """Basic-auth style `base64(user:token)` hides the token at any alignment."""
    remember(TOKEN)
    encoded = base64.b64encode(prefix + TOKEN.encode() + b"@tail").decode()
    assert MASK in redact(encoded)
    core = base64.b64encode(TOKEN.encode()).decode()[2:-4]
    assert core not in redact(encoded)


def test_nested_values_are_redacted() -> None:
    """Every string in a JSON-like value is masked, keys included."""
    remember(TOKEN)
    value = {"a": [TOKEN, 1, None, {TOKEN: f"x{TOKEN}"}]}
    assert {"a": [MASK, 1, None, {MASK: f"x{MASK}"}]} == redact_value(value)


def test_short_values_are_not_masked_in_encoded_form() -> None:
    """A 4-character secret is masked raw only: its encodings would match ordinary text."""
    remember("abcd")
    assert "YWJjZA== and ***" == redact("YWJjZA== and abcd")

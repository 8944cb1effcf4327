"""Durations, rates and Config validation."""

from __future__ import annotations

import importlib.util
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_poller.config import (
    Config,
    Credentials,
    Rate,
    format_duration,
    parse_duration,
    parse_rate,
    shown_store,
)
from async_poller.errors import ConfigError
from async_poller.redact import Secret, redact

TOKEN = Credentials(access_token=Secret("test-token"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("0.5s", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("12.5", 12.5),
        ("0", 0.0),
        (" 45s ", 45.0),
    ],
)
def test_parse_duration_accepts_the_documented_forms(text: str, seconds: float) -> None:
    """Every duration form of docs/configuration.md parses to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5s", "10x", "1.h", "s", "1h 30m", "inf", "nan", "1e3"])
def test_parse_duration_rejects_with_a_hint(text: str) -> None:
    """Anything else is refused with a message that shows the accepted forms."""
    with pytest.raises(ConfigError, match="HINT"):
        parse_duration(text)


@given(st.integers(0, 10**6))
def test_format_duration_round_trips(seconds: int) -> None:
    """Property: formatting whole seconds and parsing back gives the same value."""
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "rate"),
    [("45/min", Rate(45, 60.0)), ("2/s", Rate(2, 1.0)), ("1000 / h", Rate(1000, 3600.0))],
)
def test_parse_rate(text: str, rate: Rate) -> None:
    """N/UNIT parses for s, min and h."""
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["45", "0/min", "-1/s", "1.5/s", "45/day", "/min"])
def test_parse_rate_rejects(text: str) -> None:
    """Bad rates are refused with a hint."""
    with pytest.raises(ConfigError, match="HINT"):
        parse_rate(text)


def test_rate_str_round_trips() -> None:
    """A rate prints in the form it is written."""
    assert [str(parse_rate(t)) for t in ("45/min", "3/s", "9/h")] == ["45/min", "3/s", "9/h"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://localhost:1/",
        "http://[::1]:9",
        "https://eu.app.lucidity.cloud",
    ],
)
def test_loopback_http_and_https_are_allowed(url: str) -> None:
    """https anywhere and http to loopback hosts are accepted (trailing slash dropped)."""
    assert Config(credentials=TOKEN, base_url=url).base_url == url.rstrip("/")


def test_plain_http_to_a_remote_host_is_refused() -> None:
    """http to a non-loopback host needs --allow-insecure-http."""
    with pytest.raises(ConfigError, match="allow-insecure-http"):
        Config(credentials=TOKEN, base_url="http://app.lucidity.cloud")
    config = Config(
        credentials=TOKEN, base_url="http://app.lucidity.cloud", allow_insecure_http=True
    )
    assert config.base_url == "http://app.lucidity.cloud"


@pytest.mark.parametrize(
    "url", ["ftp://x", "app.lucidity.cloud", "https://u:p@host", "https://h/?q=1"]
)
def test_bad_base_urls_are_refused(url: str) -> None:
    """Base URLs without a scheme, with credentials or a query are refused."""
    with pytest.raises(ConfigError):
        Config(credentials=TOKEN, base_url=url)


def test_min_delay_above_max_delay_is_refused() -> None:
    """--min-delay above --max-delay is a configuration error with a hint."""
    with pytest.raises(ConfigError, match="HINT"):
        Config(credentials=TOKEN, min_delay=300.0, max_delay=120.0)


def test_exactly_one_credential() -> None:
    """Credentials need exactly one source."""
    with pytest.raises(ConfigError):
        Credentials()
    with pytest.raises(ConfigError):
        Credentials(access_token=Secret("aaaa"), token_command="echo x")


def test_secret_never_shows_its_value() -> None:
    """A Secret's repr and str are masked, so a Config can be logged safely."""
    config = Config(credentials=Credentials(refresh_token=Secret("s3cr3t-value")))
    assert "s3cr3t-value" not in repr(config)
    assert "s3cr3t-value" not in str(config)


@pytest.mark.parametrize(
    "url", ["https://user:hunter2-pw@host", "https://:hunter2-pw@host/x", "ftp://u:hunter2-pw@h"]
)
def test_a_refused_base_url_never_repeats_its_password(url: str) -> None:
    """The message about a base URL with credentials shows them as ***, never the password."""
    with pytest.raises(ConfigError) as refused:
        Config(credentials=TOKEN, base_url=url)
    assert "hunter2" not in str(refused.value)
    assert "***@" in str(refused.value)


@pytest.mark.parametrize(
    "store",
    [
        "redis://redis.internal",
        "redis://127.0.0.1:6379/0",
        "rediss://:hunter2-pw@redis.internal:6380/15",
        "redis://poller:hunter2-pw@[::1]:6379/2",
    ],
)
def test_a_redis_budget_store_is_a_url_with_a_host_and_a_database_number(store: str) -> None:
    """redis:// and rediss:// URLs with a host, an optional port, password and database
    number are accepted as they are; a Config that holds one never shows its password."""
    config = Config(credentials=TOKEN, budget_store=store)
    assert store == config.budget_store
    assert "hunter2" not in repr(config) + shown_store(store)


@pytest.mark.parametrize(
    "store",
    [
        "redis://",
        "redis://:hunter2-pw@/0",
        "redis://:hunter2-pw@host/zero",
        "redis://:hunter2-pw@host:99999/0",
        "redis://:hunter2-pw@host/0?socket_timeout=5",
        "redis://:hunter2%21pw@host:port/0",
    ],
)
def test_a_malformed_redis_budget_store_is_refused_without_its_password(store: str) -> None:
    """A Redis URL without a host, with a bad port or database, or with options: a usage
    error that shows the URL's form, its password masked everywhere from then on, as
    written and as the server knows it (percent-decoded)."""
    with pytest.raises(ConfigError, match="HINT: write redis://") as refused:
        Config(credentials=TOKEN, budget_store=store)
    assert "hunter2" not in str(refused.value)
    written = urlsplit(store).password
    for form in (written, unquote(written)) if written else ():
        assert "***" == redact(form)


def test_a_redis_budget_store_needs_the_redis_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the redis package installed, a Redis store is a usage error that says how
    to install it."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "redis" else find_spec(name)
    )
    with pytest.raises(ConfigError, match=r"pip install 'async-poller\[redis\]'"):
        Config(credentials=TOKEN, budget_store="redis://redis.internal/0")


def test_a_sqlite_budget_store_is_shown_as_its_path() -> None:
    """Only URLs are masked: a file's path is shown as it is."""
    assert "/var/lib/ap/budget.db" == shown_store("/var/lib/ap/budget.db")
    assert "redis://***@host:6379/0" == shown_store("redis://u:pw@host:6379/0")

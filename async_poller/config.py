"""Settings: a frozen `Config`, and the parsing of durations and rates shared by CLI and library.

Importing this module is cheap (no aiohttp), so `--help` and `--version` stay fast.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from .errors import ConfigError
from .redact import Secret, remember

__all__ = [
    "DEFAULT_BASE_URL",
    "Config",
    "Credentials",
    "Rate",
    "format_duration",
    "is_redis_url",
    "parse_duration",
    "parse_rate",
    "shown_store",
]

DEFAULT_BASE_URL: Final = "https://app.lucidity.cloud"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_BARE_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"(\d+)\s*/\s*([a-z]+)")
_RATE_UNITS: Final = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE_UNIT_NAMES: Final = {1.0: "s", 60.0: "min", 3600.0: "h"}


def parse_duration(text: str) -> float:
    """Parse `500ms`, `10s`, `0.5s`, `2m`, `1h`, `1h30m` or bare seconds (`12.5`) into seconds."""
    value = text.strip().lower()
    if _BARE_SECONDS.fullmatch(value):
        return float(value)
    parts = _DURATION_PART.findall(value)
    if not value or "".join(number + unit for number, unit in parts) != value:
        raise ConfigError(
            f"invalid duration {text!r}\n"
            "HINT: use a number with a unit (500ms, 10s, 2m, 1h30m) or bare seconds (12.5)"
        )
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration: `45s`, `2m`, `1h30m`, `0.25s`."""
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` requests in any sliding window of `period` seconds.

    Parsed rates have a whole `limit`; the rate in force after throttling may not.
    """

    limit: float
    period: float

    def __post_init__(self) -> None:
        if not (self.limit > 0 and math.isfinite(self.limit)) or not (
            self.period > 0 and math.isfinite(self.period)
        ):
            raise ConfigError(f"invalid rate {self.limit}/{self.period}s: both must be positive")

    @property
    def per_second(self) -> float:
        return self.limit / self.period

    def __str__(self) -> str:
        unit = _RATE_UNIT_NAMES.get(self.period)
        limit = f"{self.limit:.1f}" if self.limit >= 1 else f"{self.limit:.2g}"
        limit = limit.removesuffix(".0")
        return f"{limit}/{unit}" if unit else f"{limit}/{self.period:g}s"


def parse_rate(text: str) -> Rate:
    """Parse `N/UNIT` with UNIT `s`, `min` or `h` (e.g. `45/min`)."""
    match = _RATE.fullmatch(text.strip().lower())
    if not match or match.group(2) not in _RATE_UNITS or int(match.group(1)) < 1:
        raise ConfigError(
            f"invalid rate {text!r}\nHINT: write N/UNIT, N >= 1, UNIT s, min or h (e.g. 45/min)"
        )
    return Rate(int(match.group(1)), _RATE_UNITS[match.group(2)])


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """Exactly one way to obtain access tokens (docs/api-contract.md, Authentication)."""

    refresh_token: Secret | None = None
    access_token: Secret | None = None
    token_command: str | None = None

    def __post_init__(self) -> None:
        given = [self.refresh_token, self.access_token, self.token_command]
        if sum(x is not None for x in given) != 1:
            raise ConfigError(
                "give exactly one of: a refresh token, an access token, a token command\n"
                "HINT: set LUCIDITY_REFRESH_TOKEN, or use --refresh-token-file PATH, "
                "LUCIDITY_ACCESS_TOKEN or --token-command CMD"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything a run needs besides the job ids. Durations are in seconds."""

    credentials: Credentials
    base_url: str = DEFAULT_BASE_URL
    concurrency: int = 8
    rate: Rate = field(default_factory=lambda: Rate(45, 60.0))
    burst: int = 1
    """Requests that may go at once after an idle spell; then one per 1/rate."""
    thrifty: bool = False
    """Poll by backoff alone, even when the budget could afford more frequent polls."""
    budget_store: str | None = field(default=None, repr=False)  # a URL may hold a password
    """Where every process of the tenant shares the budget: a SQLite file's path, or a
    `redis://` / `rediss://` URL to share it across machines; None: this process's own
    budget. The CLI's default is `_pacing.tenant.default_store_path()`."""
    min_delay: float = 10.0
    max_delay: float = 120.0
    deadline: float = 3600.0
    request_timeout: float = 10.0
    once: bool = False
    allow_insecure_http: bool = False
    ca_bundle: str | None = None
    state_file: Path | None = None
    """SQLite state file: resume, report only changes across runs, keep history."""
    metrics_file: Path | None = None
    """Where to write Prometheus text-format metrics at the end of the run."""
    unknown_delay: float = 5.0
    """How soon an UNKNOWN answer is checked again."""
    max_unknown: int = 6
    """Consecutive UNKNOWN answers before the job ends `UNKNOWN`."""
    max_not_found: int = 3
    """Consecutive 404 answers before the job ends `NOT_FOUND`."""
    bad_response_window: float = 600.0
    """How long a job's answers may stay malformed (HTTP 200 with an HTML maintenance page,
    an unknown status word, an oversized answer) before it ends `ERROR`: such answers are
    transient, like a 503. Any good answer starts the window over."""
    seed: int | None = None
    """Seed for the jitter, for reproducible runs; None draws a fresh one."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "base_url", check_base_url(self.base_url, self.allow_insecure_http)
        )
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        if not 1 <= self.burst <= self.rate.limit:
            raise ConfigError(
                f"--burst must be from 1 to the rate's N ({self.rate}), got {self.burst}\n"
                "HINT: a small burst (1 to 5) suits every server limiter"
            )
        for name in ("min_delay", "unknown_delay"):
            _check_duration(name, getattr(self, name), allow_zero=True)
        for name in ("max_delay", "deadline", "request_timeout", "bad_response_window"):
            _check_duration(name, getattr(self, name), allow_zero=False)
        if self.min_delay > self.max_delay:
            raise ConfigError(
                f"--min-delay ({format_duration(self.min_delay)}) is above --max-delay "
                f"({format_duration(self.max_delay)})\nHINT: raise --max-delay or lower --min-delay"
            )
        for name in ("max_unknown", "max_not_found"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.budget_store is not None and is_redis_url(self.budget_store):
            check_redis_url(self.budget_store)


def _check_duration(name: str, value: float, *, allow_zero: bool) -> None:
    flag = "--" + name.replace("_", "-")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{flag} must be a positive duration, got {value!r}")


def check_base_url(url: str, allow_insecure_http: bool) -> str:
    """Validate the API base URL and return it without a trailing slash."""
    parts = urlsplit(url.strip())
    shown = _without_userinfo(url.strip())  # never repeat a password given in the URL
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"invalid base URL {shown!r}\nHINT: give the API host, e.g. {DEFAULT_BASE_URL}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"the base URL must not carry credentials, a query or a fragment: {shown!r}"
        )
    if parts.scheme == "http" and not (allow_insecure_http or is_loopback(parts.hostname)):
        raise ConfigError(
            f"refusing plain http to {parts.hostname}: tokens would travel unencrypted\n"
            "HINT: use https://, or pass --allow-insecure-http if you really mean it"
        )
    return url.strip().rstrip("/")


def is_redis_url(store: str) -> bool:
    """True for a budget store that is a Redis server (`redis://` or `rediss://`)."""
    return store.startswith(("redis://", "rediss://"))


def check_redis_url(url: str) -> None:
    """Validate a Redis budget store, `redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, and
    register its password with `redact`; the client library must be installed."""
    parts = urlsplit(url)
    if parts.password:
        remember(parts.password)  # as written, and as the server knows it
        remember(unquote(parts.password))
    shown = shown_store(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    database = parts.path.removeprefix("/")
    plain = not (parts.query or parts.fragment)
    if not (parts.hostname and port_ok and plain and re.fullmatch(r"[0-9]*", database)):
        raise ConfigError(
            f"invalid budget store {shown!r}\n"
            "HINT: write redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS), "
            "e.g. redis://redis.internal:6379/0"
        )
    if importlib.util.find_spec("redis") is None:
        raise ConfigError(
            f"the budget store {shown!r} needs the Redis client library\n"
            "HINT: pip install 'async-poller[redis]'"
        )


def shown_store(store: str) -> str:
    """A budget store as it may be shown: a URL's user and password as `***`."""
    return _without_userinfo(store) if is_redis_url(store) else store


def _without_userinfo(url: str) -> str:
    """`url` with anything between `//` and `@` in its authority shown as `***`."""
    scheme, separator, rest = url.partition("//")
    authority, slash, path = rest.partition("/")
    if not separator or "@" not in authority:
        return url
    return f"{scheme}//***@{authority.rpartition('@')[2]}{slash}{path}"


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Checking request input the way the API does: job ids and Agent Install bodies (pure)."""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from .fleet import CLOUD_PROVIDERS

__all__ = ["InstallRequest", "parse_install", "parse_job_id"]

_DIGITS: Final = re.compile(r"[0-9]+")
_MAX_LONG: Final = 2**63 - 1


def parse_job_id(values: list[str]) -> int | None:
    """The job id of a query (`?id=N`), or None unless it is one positive signed 64-bit integer."""
    if len(values) != 1 or not _DIGITS.fullmatch(values[0]):
        return None
    digits = values[0].lstrip("0")
    # Compare lengths first: int() of a huge digit string is slow (and refused past 4300 digits).
    if not digits or len(digits) > len(str(_MAX_LONG)) or int(digits) > _MAX_LONG:
        return None
    return int(digits)


class InstallRequest(NamedTuple):
    """One job to create, from an Agent Install request object."""

    cloud_provider: str
    instance_ids: list[str]


def parse_install(body: object) -> list[InstallRequest]:
    """The jobs an Agent Install body asks for: one object or an array of them.

    Raises `ValueError` with the message the API answers with.
    """
    items = body if isinstance(body, list) else [body]
    if not items:
        raise ValueError("the body must hold at least one install request")
    requests = []
    for n, item in enumerate(items):
        where = f"item {n}: " if isinstance(body, list) else ""
        if not isinstance(item, dict):
            raise ValueError(where + "an install request must be a JSON object")
        requests.append(_install_request(item, where))
    return requests


def _install_request(item: dict[str, object], where: str) -> InstallRequest:
    provider = item.get("cloudProvider")
    instance_ids = item.get("instanceIds")
    if not isinstance(provider, str) or provider not in CLOUD_PROVIDERS:
        problem = f"cloudProvider must be one of {', '.join(CLOUD_PROVIDERS)}"
    elif not _is_text(item.get("cloudProviderAccountId")):
        problem = "cloudProviderAccountId is required"
    elif provider == "AZURE" and not _is_text(item.get("resourceGroup")):
        problem = "resourceGroup is required for AZURE"
    elif not isinstance(instance_ids, list) or not instance_ids:
        problem = "instanceIds must be a non-empty list"
    elif not all(_is_text(i) for i in instance_ids):
        problem = "every instanceIds entry must be a non-empty string"
    else:
        return InstallRequest(provider, [str(i) for i in instance_ids])
    raise ValueError(where + problem)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())

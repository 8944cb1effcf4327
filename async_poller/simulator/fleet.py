"""Realistic-looking cloud details for simulated jobs: providers, instance ids, failure reasons."""

from __future__ import annotations

import random
from typing import Final

__all__ = ["CLOUD_PROVIDERS", "cancel_reason", "failure_reason", "instance_ids", "pick_provider"]

CLOUD_PROVIDERS: Final = ("AWS", "AZURE", "GCP")
_PROVIDER_WEIGHTS: Final = (0.7, 0.2, 0.1)

_AZURE_ROLES: Final = ("web", "api", "db", "batch", "cache", "jump")
_AZURE_ENVS: Final = ("prod", "stage", "dev")

_COMMON_FAILURES: Final = (
    "Timed out waiting for the agent heartbeat from {instance} after 600s",
    "Insufficient disk space on {instance}: 212 MiB free, 500 MiB required",
    "Unsupported operating system on {instance}: CentOS 6.10",
    "Agent package download failed on {instance}: connection to repo timed out",
)
_PROVIDER_FAILURES: Final = {
    "AWS": (
        "SSM agent not reachable on {instance}",
        "Instance {instance} is stopped",
        "AccessDeniedException: not authorized to perform ssm:SendCommand on {instance}",
    ),
    "AZURE": (
        "VM agent not ready on {instance}",
        "VM {instance} is deallocated",
        "Run Command extension failed on {instance}: exit code 1",
    ),
    "GCP": (
        "Guest agent not responding on instance {instance}",
        "OS Login denied for the Lucidity service account on instance {instance}",
    ),
}
_CANCEL_REASONS: Final = (
    "Cancelled by user",
    "Cancelled: superseded by a newer install request",
    "Cancelled: cloud account was disconnected",
)


def pick_provider(rng: random.Random) -> str:
    """A cloud provider, AWS most often, as in a typical fleet."""
    return rng.choices(CLOUD_PROVIDERS, weights=_PROVIDER_WEIGHTS)[0]


def instance_ids(rng: random.Random, provider: str, count: int) -> list[str]:
    """`count` distinct instance identifiers in the provider's own style."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        ids[_instance_id(rng, provider)] = None
    return list(ids)


def _instance_id(rng: random.Random, provider: str) -> str:
    if provider == "AWS":
        return f"i-0{rng.getrandbits(64):016x}"
    if provider == "AZURE":
        return f"vm-{rng.choice(_AZURE_ROLES)}-{rng.choice(_AZURE_ENVS)}-{rng.randrange(100):02d}"
    return str(rng.randrange(10**18, 10**19))


def failure_reason(rng: random.Random, provider: str, instance: str) -> str:
    """Why the agent install failed on one instance."""
    templates = _PROVIDER_FAILURES.get(provider, ()) + _COMMON_FAILURES
    return rng.choice(templates).format(instance=instance)


def cancel_reason(rng: random.Random) -> str:
    """Why a job was cancelled."""
    return rng.choice(_CANCEL_REASONS)

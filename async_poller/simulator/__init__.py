"""The Lucidity API simulator: status, install and token-refresh endpoints (docs/api-contract.md).

    async with Simulator(SimulatorConfig(time_scale=60)) as sim:
        ids = sim.create_jobs(10)
        ...  # poll sim.base_url with sim.refresh_token, then compare with sim.truth()

`Simulator` is imported lazily, so that `serve.add_simulate_arguments` (for `--help`) does not
pay for importing aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .faultplan import FAULT_KINDS, FaultPlan, FaultWindow
from .jobs import InstanceTruth, JobTruth
from .records import RequestRecord
from .settings import SimulatorConfig

if TYPE_CHECKING:
    from .server import Simulator

__all__ = [
    "FAULT_KINDS",
    "FaultPlan",
    "FaultWindow",
    "InstanceTruth",
    "JobTruth",
    "RequestRecord",
    "Simulator",
    "SimulatorConfig",
]


def __getattr__(name: str) -> object:
    if name == "Simulator":
        from .server import Simulator

        return Simulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

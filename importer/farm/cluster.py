"""Connecting to the farm: ``local`` starts Ray on this machine, anything else joins a cluster.

``connect`` returns a ``Farm`` (the Ray session and the worker actors' options), or
raises ``FarmUnavailable`` with one sentence saying why: Ray missing (and what to
install), the address unreachable, or a cluster without room for one worker. The caller
turns that into one message and a local build, or exit 1 with ``--require-farm``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import ProjectConfig
from ..errors import TrackspecError
from ..farm_settings import INSTALL_HINT, FarmSettings

#: Seconds a ``ray://`` or ``host:port`` address gets to accept a TCP connection.
PROBE_TIMEOUT = 5.0
#: Times a ``ray://`` join is tried when the server aborts it.
JOIN_ATTEMPTS = 3


class FarmUnavailable(TrackspecError):
    """The farm cannot be used (the message says why and what to do)."""


@dataclass
class Farm:
    """A connected farm: how many workers to start and what each reserves."""

    settings: FarmSettings
    ray: Any
    workers: int
    options: dict[str, Any]
    describe: str
    started_here: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the Ray started here, or leave the joined cluster (its workers keep running)."""
        if self.ray.is_initialized():
            self.ray.shutdown()


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise FarmUnavailable(
            f"the farm needs Ray, which is not installed here ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


def _probe(address: str) -> None:
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        raise FarmUnavailable(f"the farm at {address} is unreachable ({exc})") from None


def _code_path() -> str:
    """The folder this ``importer`` package is imported from: workers of a local farm import it too."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def connect(config: ProjectConfig, settings: FarmSettings) -> Farm:
    """Start or join the Ray cluster ``settings.address`` names; decide the worker count."""
    ray = import_ray()
    start = time.monotonic()
    address = settings.address
    wants_gpu = config.device != "cpu" and settings.resource is None
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING", "configure_logging": True}
    if ray.is_initialized():
        ray.shutdown()
    try:
        if address == "local":
            gpus = _local_gpus() if wants_gpu else 0
            workers = settings.workers or gpus or 1
            cpus = workers * settings.cpus_per_worker
            resources = {settings.resource: workers} if settings.resource else None
            # The raylet and its workers inherit this environment: they import this checkout.
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_code_path(), os.environ.get("PYTHONPATH")) if p)
            # address="local": a new instance even where another Ray runs on this machine.
            ray.init(address="local", num_cpus=cpus, num_gpus=gpus if wants_gpu else 0, resources=resources, **quiet)
        else:
            if address != "auto":
                _probe(address)
            _join(ray, address, quiet)
    except FarmUnavailable:
        raise
    except Exception as exc:  # ConnectionError, a version mismatch, a refused token, ...
        if ray.is_initialized():
            ray.shutdown()
        what = "start Ray on this machine" if address == "local" else f"join the farm at {address}"
        raise FarmUnavailable(f"cannot {what}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None
    total = ray.cluster_resources()
    options: dict[str, Any] = {"num_cpus": settings.cpus_per_worker}
    if settings.resource:
        options["resources"] = {settings.resource: 1}
        workers = int(total.get(settings.resource, 0))
        unit = f"unit of '{settings.resource}'"
    elif wants_gpu and total.get("GPU", 0) >= 1:
        options["num_gpus"] = 1
        workers = int(total["GPU"])
        unit = "GPU"
    else:
        workers = int(total.get("CPU", 0) // settings.cpus_per_worker)
        unit = f"{settings.cpus_per_worker} CPU(s)"
    if settings.workers:
        workers = min(workers, settings.workers)
    if workers < 1:
        ray.shutdown()
        raise FarmUnavailable(
            f"the farm at {address} has no room for a worker (each needs one {unit}; "
            f"the cluster has {_resources(total)})"
        )
    seconds = time.monotonic() - start
    where = "started on this machine" if address == "local" else f"joined at {address}"
    describe = f"farm {where} in {seconds:.1f} s: {workers} worker(s), one per {unit}"
    return Farm(settings, ray, workers, options, describe, address == "local", seconds)


def _join(ray: Any, address: str, options: dict[str, Any]) -> None:
    """``ray.init(address)``; a Ray Client server whose per-client server failed to start
    (``ConnectionAbortedError``: it forks while gRPC threads run) is asked again."""
    for attempt in range(1, JOIN_ATTEMPTS + 1):
        try:
            ray.init(address=address, **options)
            return
        except ConnectionAbortedError:
            if ray.is_initialized():
                ray.shutdown()
            if attempt == JOIN_ATTEMPTS:
                raise


def _local_gpus() -> int:
    """CUDA devices visible here, without importing torch (Ray's own detection)."""
    try:
        from ray._private.accelerators import NvidiaGPUAcceleratorManager

        return int(NvidiaGPUAcceleratorManager.get_current_node_num_accelerators())
    except Exception:
        return 0


def _resources(total: dict[str, float]) -> str:
    shown = {k: v for k, v in total.items() if not k.startswith(("node:", "memory", "object_store"))}
    return ", ".join(f"{k}={v:g}" for k, v in sorted(shown.items())) or "nothing"

"""``[farm]`` of ``trackspec.toml``, ``TRACKSPEC_FARM`` and ``--farm``: where generation runs.

No Ray import here: a build without a farm never loads it, and one with a farm loads it
only when a track needs generating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fields import Field, FieldProblem, boolean, ranged, text

#: Overrides ``[farm] address`` (as ``--farm`` does): set on a build agent.
FARM_ENV = "TRACKSPEC_FARM"
#: What to install where Ray is missing (the build machine and every worker node).
INSTALL_HINT = 'pip install "trackspec[farm]"  (Ray Core with its client: ray[client]>=2.60)'


def check_address(value: Any) -> str:
    """``local``, ``auto``, ``ray://host:port`` (Ray Client) or ``host:port`` (the GCS of a cluster)."""
    text(required=True)(value)
    value = value.strip()
    if value in ("local", "auto"):
        return value
    rest = value[len("ray://") :] if value.startswith("ray://") else value
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in rest:
        raise FieldProblem(f"{value!r} is not a farm address; use 'local', 'auto', 'ray://host:10001' or 'host:6379'")
    return value


FARM_FIELDS: dict[str, Field] = {
    "address": Field(check_address, None, "local (start Ray here), auto or ray://host:10001 (join a cluster)"),
    "workers": Field(
        ranged(1, 256, integer=True), None, "workers to start (default: one per GPU, or per unit of `resource`; else 1)"
    ),
    "cpus_per_worker": Field(ranged(1, 256, integer=True), 1, "CPUs each worker reserves"),
    "resource": Field(
        text(required=True), None, "a custom Ray resource each worker reserves one unit of, instead of a GPU"
    ),
    "require": Field(boolean, False, "an unreachable farm fails the build instead of building locally"),
}


@dataclass(frozen=True)
class FarmSettings:
    address: str
    workers: int | None = None
    cpus_per_worker: int = 1
    resource: str | None = None
    require: bool = False

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> FarmSettings:
        return cls(
            address=values["address"],
            workers=values.get("workers"),
            cpus_per_worker=int(values.get("cpus_per_worker", 1)),
            resource=values.get("resource"),
            require=bool(values.get("require", False)),
        )


def with_overrides(config: Any, address: str | None, require: bool) -> Any:
    """``config`` with ``--farm ADDRESS`` and ``--require-farm`` applied (a ``ProjectConfig``)."""
    import dataclasses

    from .errors import TrackspecError

    farm = config.farm
    if address is not None:
        try:
            address = check_address(address)
        except FieldProblem as exc:
            raise TrackspecError(f"--farm: {exc}") from None
        farm = dataclasses.replace(farm, address=address) if farm is not None else FarmSettings(address)
    if require:
        if farm is None:
            raise TrackspecError(
                f"--require-farm: no farm is configured; pass --farm ADDRESS, set {FARM_ENV} "
                "or add a [farm] table to trackspec.toml"
            )
        farm = dataclasses.replace(farm, require=True)
    return dataclasses.replace(config, farm=farm) if farm is not config.farm else config

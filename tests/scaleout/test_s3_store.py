"""Sandboxes and logs in an S3 bucket (SeaweedFS here): content addressed, stored once,
streamed back, logs appended by offset and read back through every replica."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import boto3
import pytest
import requests

from coordinator.errors import Unavailable
from coordinator.storage import open_store
from tests.coordinator.pilot_calls import FakePilot, User
from tests.coordinator.test_api_sandboxes import download, tarball, upload
from tests.scaleout.conftest import Deployment
from tests.services.s3 import BUCKET, S3Server


def objects(server: S3Server, prefix: str) -> dict[str, int]:
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.env()["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=server.env()["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    found = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {item["Key"][len(prefix) :]: int(item["Size"]) for item in found}


def test_sandboxes_are_stored_once_and_streamed_back(
    deploy: Callable[..., Deployment], s3_server: S3Server
) -> None:
    deployment = deploy(replicas=2, proxy=False)
    r0, r1 = deployment.replicas
    alice, bob = User(r0, "vo1"), User(r0, "vo1", subject="bob")
    # Incompressible, 2.4 MB: over 1 MiB, so stored through the socket lane
    # (coordinator/api/socketupload.py) into the staging directory and then the bucket.
    data = tarball({f"file{i}.txt": os.urandom(300_000) for i in range(8)})
    digest = hashlib.sha256(data).hexdigest()
    assert upload(r0, alice.token, data).status_code == 201
    assert upload(r1, alice.token, data).status_code == 200  # hers already: not stored again
    assert upload(r1, bob.token, data).status_code == 201  # bob proves he has the bytes too
    assert upload(r0, bob.token, b"other bytes", sha256=digest).status_code == 422
    prefix = deployment.store.removeprefix(f"s3://{BUCKET}/") + "/"
    assert objects(s3_server, prefix + "sandboxes/") == {f"{digest[:2]}/{digest}": len(data)}
    fetched = download(r1, bob.token, digest)
    assert fetched.status_code == 200
    assert fetched.headers["content-length"] == str(len(data))
    assert fetched.content == data
    carol = User(r1, "vo1", subject="carol")
    assert download(r1, carol.token, digest).status_code == 404


def test_logs_read_the_same_from_every_replica_across_a_reschedule(
    deploy: Callable[..., Deployment],
) -> None:
    r0, r1 = deploy(replicas=2, proxy=False).replicas
    alice = User(r0, "vo1")
    [job_id] = alice.submit()
    pilot = FakePilot(r0, "vo1")
    assert pilot.match() == [job_id]
    pilot.report(job_id, "Running")
    chunks = [b"first line\n", b"second line, longer\n", b"third\n"]
    offset = 0
    for i, chunk in enumerate(chunks):
        pilot.coord = (r0, r1)[i % 2]
        assert pilot.append_log(job_id, chunk, offset).json()["next_offset"] == offset + len(chunk)
        offset += len(chunk)
    # A retried chunk is taken once; a chunk with other bytes at a stored offset is refused.
    assert pilot.append_log(job_id, chunks[2], offset - len(chunks[2])).status_code == 200
    assert pilot.append_log(job_id, b"xxxxx\n", offset - len(chunks[2])).status_code == 409
    alice.coord = r1
    assert alice.get(f"/jobs/{job_id}/logs/stdout").content == b"".join(chunks)
    middle = alice.get(f"/jobs/{job_id}/logs/stdout", offset=5, limit=20).content
    assert middle == b"".join(chunks)[5:25]

    # A reschedule clears the log; the next run's shorter pieces replace the old ones.
    assert alice.post(f"/jobs/{job_id}/reschedule").status_code == 200
    other = FakePilot(r1, "vo1", subject="factory2")
    assert other.match() == [job_id]
    other.report(job_id, "Running")
    assert other.append_log(job_id, b"new\n", 0).status_code == 200
    assert alice.get(f"/jobs/{job_id}/logs/stdout").content == b"new\n"
    assert other.append_log(job_id, b"run two\n", 4).status_code == 200
    assert alice.get(f"/jobs/{job_id}/logs/stdout").content == b"new\nrun two\n"


def test_a_store_that_cannot_be_reached_is_unavailable(tmp_path: Path) -> None:
    """Connection refused on every call: ``Unavailable`` (503 to clients), not a crash."""
    port = requests.adapters.DEFAULT_POOLSIZE  # any closed port below 1024 will do
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "x"}
    env["AWS_SECRET_ACCESS_KEY"] = "y"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        store = open_store("s3://nowhere/prefix", tmp_path)
    with pytest.raises(Unavailable):
        store.size("sandboxes/ab/abc")
    with pytest.raises(Unavailable):
        store.write_at("logs/1/stdout", 0, b"x")

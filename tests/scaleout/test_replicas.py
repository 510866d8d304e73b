"""Several ``gridpilot serve`` replicas on one PostgreSQL database and one S3 store: any
replica answers any request, sweeps run everywhere and act once, revocations and the
signing key are shared, metrics are each replica's own."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Callable

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot, User, wait_for
from tests.coordinator.test_api_sandboxes import download, tarball, upload
from tests.scaleout.conftest import Deployment


def test_any_replica_answers_any_request(deploy: Callable[..., Deployment]) -> None:
    r0, r1, r2 = deploy(replicas=3, proxy=False).replicas
    alice = User(r0, "vo1")
    data = tarball({"input.txt": b"input through replica 0\n"})
    digest = upload(r0, alice.token, data).json()["sha256"]
    alice.coord = r1
    cat = {"Executable": "/bin/cat", "InputSandbox": ["input.txt"]}
    [job_id] = alice.submit(cat, input_sandboxes=[digest])
    alice.coord = r2
    assert alice.job(job_id)["status"] == "Waiting"

    pilot = FakePilot(r1, "vo1")
    pilot.coord = r2
    assert pilot.match() == [job_id]
    assert download(r0, pilot.token, digest).content == data
    pilot.coord = r0
    assert pilot.report(job_id, "Running").status_code == 200
    pilot.coord = r1
    assert pilot.append_log(job_id, b"line 1\n", 0).status_code == 200
    pilot.coord = r2
    assert pilot.append_log(job_id, b"line 2\n", 7).status_code == 200
    output = tarball({"out.txt": b"output through replica 1\n"})
    out_digest = upload(r1, pilot.token, output).json()["sha256"]
    pilot.coord = r0
    done = pilot.report(job_id, "Done", exit_code=0, output_sandbox=out_digest)
    assert done.status_code == 200, done.text

    alice.coord = r1
    assert alice.get(f"/jobs/{job_id}/logs/stdout").content == b"line 1\nline 2\n"
    assert download(r2, alice.token, out_digest).content == output
    history = [status for status, _, _ in alice.history(job_id)]
    assert history[-3:] == ["Matched", "Running", "Done"]


def test_a_revocation_reaches_every_replica(deploy: Callable[..., Deployment]) -> None:
    deployment = deploy(replicas=2, proxy=False, env={"GRIDPILOT_REVOCATION_REFRESH_S": "0.5"})
    r0, r1 = deployment.replicas
    alice = User(r0, "vo1")
    token_id = json.loads(_claims(alice.token))["jti"]
    alice.coord = r1
    assert alice.get("/jobs").status_code == 200
    admin = User(r0, "vo1", subject="ops", role="admin")
    revoked = requests.post(
        r0.api("/tokens/revoke"), json={"token_id": token_id}, headers=admin.headers()
    )
    assert revoked.status_code == 200
    assert requests.get(r0.api("/jobs"), headers=alice.headers()).status_code == 401
    wait_for(lambda: alice.get("/jobs").status_code == 401, 10, "the revocation on replica 1")


def _claims(token: str) -> str:
    import base64

    head = token.split(".")[0]
    return base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()


def test_sweeps_on_every_replica_act_once_per_job(deploy: Callable[..., Deployment]) -> None:
    """Three replicas sweep every 0.2 s; jobs matched and never started are each
    rescheduled exactly once, whichever replica got there first."""
    deployment = deploy(replicas=3, proxy=False, match_timeout_s=1, sweep_interval_s=0.2)
    r0 = deployment.replicas[0]
    alice = User(r0, "vo1")
    job_ids = alice.submit(Parameters=40)
    pilot = FakePilot(r0, "vo1")
    reply = requests.post(
        r0.api(f"/pilots/{pilot.pilot_id}/match"),
        json={"n": 40, "cores_free": 40},
        headers=pilot.headers(),
    )
    assert sorted(job["job_id"] for job in reply.json()["jobs"]) == job_ids

    def all_waiting_again() -> bool:
        return all(alice.job(job_id)["status"] == "Waiting" for job_id in job_ids)

    wait_for(all_waiting_again, 30, "every job rescheduled")
    time.sleep(1.0)  # three more sweeps on each replica: nothing more may happen
    for job_id in job_ids:
        statuses = [status for status, _, _ in alice.history(job_id)]
        assert statuses.count("Rescheduled") == 1, (job_id, statuses)
        assert alice.job(job_id)["reschedule_count"] == 1
    sweepers = [r for r in deployment.replicas if "rescheduled (1)" in r.log()]
    assert sweepers, "no replica logged a reschedule"


def test_metrics_are_each_replicas_own(deploy: Callable[..., Deployment]) -> None:
    r0, r1 = deploy(replicas=2, proxy=False).replicas
    pilot = FakePilot(r0, "vo1")
    pilot.coord = r1
    for _ in range(3):
        assert pilot.match() == []
    assert _match_requests(r0) == 0
    assert _match_requests(r1) == 3


def _match_requests(replica: RunningCoordinator) -> float:
    page = requests.get(f"{replica.url}/metrics", timeout=10).text
    values = [
        float(line.split()[-1])
        for line in page.splitlines()
        if line.startswith("gridpilot_match_requests_total")
    ]
    return sum(values)


def test_a_replica_without_the_shared_key_does_not_start(
    deploy: Callable[..., Deployment],
) -> None:
    deployment = deploy(replicas=1, proxy=False)
    missing = deployment.key_dir / "elsewhere.pem"
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    result = subprocess.run(
        [sys.executable, "-m", "coordinator", "serve", "--data-dir",
         str(deployment.base_dir / "lonely"), "--port", "0",
         "--database-url", deployment.database_url,
         "--signing-key-file", str(missing)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    # A token made from the shared key file (no data dir needed) works on the replicas.
    made = subprocess.run(
        [sys.executable, "-m", "coordinator", "token", "create", "--subject", "carol",
         "--vo", "vo1", "--signing-key-file", str(deployment.key_dir / "signing-key.pem")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    token = made.stdout.strip()
    replica = deployment.replicas[0]
    assert requests.get(replica.api("/jobs"), headers=replica.headers(token)).status_code == 200
    assert result.stderr.strip().splitlines()[-1] == (
        f"gridpilot: no signing key at {missing}: give every coordinator replica a copy of the "
        "same key (e.g. the signing-key.pem of the first one)"
    )


def test_through_haproxy_requests_spread_over_the_replicas(
    deploy: Callable[..., Deployment],
) -> None:
    deployment = deploy(replicas=3)
    token = deployment.token(role="pilot", subject="factory")
    headers = deployment.replicas[0].headers(token)
    reg = {"hostname": "wn", "pilot_version": "0.1.0"}
    pilot_id = requests.post(f"{deployment.url}/api/v1/pilots", json=reg, headers=headers).json()[
        "pilot_id"
    ]
    for _ in range(9):
        reply = requests.post(
            f"{deployment.url}/api/v1/pilots/{pilot_id}/match", json={}, headers=headers
        )
        assert reply.status_code == 200
    assert [_match_requests(r) for r in deployment.replicas] == [3, 3, 3]
    digest = hashlib.sha256(b"").hexdigest()
    assert len(digest) == 64

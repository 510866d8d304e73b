"""The Launchpad's submit endpoint over HTTP: the chosen files become one input sandbox of
the caller's, an InputSandbox file not chosen is refused before anything is stored, and a
JDL error names its line and column (the browser test shows them in the page)."""

from __future__ import annotations

import io
import re
import tarfile

import requests

from tests.conftest import RunningCoordinator
from tests.coordinator.pilot_calls import FakePilot
from tests.web.test_web_access import csrf_of, log_in

JDL = '[Executable = "/bin/cat"; Arguments = "data.txt"; InputSandbox = {"data.txt"};]'


def submit(
    coordinator: RunningCoordinator, session: requests.Session, jdl: str, **files: bytes
) -> requests.Response:
    fields = {"description": (None, jdl), "csrf_token": (None, csrf_of(session, coordinator))}
    parts = [*fields.items(), *(("files", (name, data)) for name, data in files.items())]
    return session.post(coordinator.url + "/web/launchpad", files=parts, timeout=10)


def test_files_become_the_jobs_input_sandbox(coordinator: RunningCoordinator) -> None:
    alice = log_in(coordinator, coordinator.token("user", "alice", "vo1"))
    missing = submit(coordinator, alice, JDL)
    assert missing.status_code == 400
    assert missing.json()["code"] == "invalid_description"
    assert "data.txt" in missing.json()["message"]

    done = submit(coordinator, alice, JDL, **{"data.txt": b"42\n", "extra.bin": b"\x00\x01"})
    assert done.status_code == 201, done.text
    (job_id,) = done.json()["job_ids"]
    token = coordinator.token("user", "alice", "vo1")
    headers = coordinator.headers(token)
    info = requests.get(coordinator.api(f"/jobs/{job_id}"), headers=headers, timeout=10).json()
    assert info["description"]["InputSandbox"] == ["data.txt"]
    # The pilot that takes the job gets the archive: its files under their names.
    pilot = FakePilot(coordinator, "vo1")
    matched = requests.post(
        coordinator.api(f"/pilots/{pilot.pilot_id}/match"),
        json={"n": 1, "cores_free": 1},
        headers=pilot.headers(),
        timeout=10,
    ).json()
    (assignment,) = matched["jobs"]
    (digest,) = assignment["input_sandboxes"]
    archive = requests.get(
        coordinator.api(f"/sandboxes/{digest}"), headers=pilot.headers(), timeout=10
    )
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        contents = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert contents == {"data.txt": b"42\n", "extra.bin": b"\x00\x01"}


def test_a_jdl_error_names_line_and_column(coordinator: RunningCoordinator) -> None:
    alice = log_in(coordinator, coordinator.token("user", "alice", "vo1"))
    reply = submit(coordinator, alice, '[\n  Executable = "/bin/true";\n  Arguments = ;\n]')
    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == "jdl_syntax" and body["details"]["line"] == 3
    assert re.match(r"line 3, column \d+", body["message"])

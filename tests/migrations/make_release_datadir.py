"""Make the data dir fixture of a release: ``python -m tests.migrations.make_release_datadir DIR``.

Run with the code of the release being frozen (a checkout of its tag), once; the data dir
it leaves is committed under ``tests/migrations/`` and ``test_migrations.py`` upgrades a
copy of it with the current code. It holds one of everything a coordinator stores: jobs in
several states with their history, an input and an output sandbox, live logs, a pilot, its
own log, fair-share usage, task queues and a revoked token.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import requests

from tests.conftest import launch_coordinator
from tests.coordinator.pilot_calls import FakePilot, User
from tests.coordinator.test_api_sandboxes import tarball, upload

VO = "vo1"
MANIFEST = "manifest.json"


def make(target: Path) -> None:
    coord = launch_coordinator(target)
    try:
        alice = User(coord, VO)
        data = tarball({"input.txt": b"release input\n"})
        digest = upload(coord, alice.token, data).json()["sha256"]
        cat = {"Executable": "/bin/cat", "InputSandbox": ["input.txt"]}
        [done_id] = alice.submit(cat, input_sandboxes=[digest])
        waiting_ids = alice.submit(Parameters=3, JobName="waiting-%n")
        pilot = FakePilot(coord, VO)
        assert pilot.match() == [done_id]
        assert pilot.report(done_id, "Running").status_code == 200
        assert pilot.append_log(done_id, b"hello from the release\n", 0).status_code == 200
        output = tarball({"out.txt": b"release output\n"})
        out_digest = upload(coord, pilot.token, output).json()["sha256"]
        final = pilot.report(done_id, "Done", exit_code=0, output_sandbox=out_digest)
        assert final.status_code == 200, final.text
        admin = User(coord, VO, subject="ops", role="admin")
        revoked = requests.post(
            coord.api("/tokens/revoke"),
            json={"token_id": "0123456789abcdef", "reason": "fixture"},
            headers=admin.headers(),
        )
        assert revoked.status_code == 200, revoked.text
        manifest = {
            "vo": VO,
            "done_job": done_id,
            "waiting_jobs": waiting_ids,
            "input_sha256": digest,
            "output_sha256": out_digest,
            "output_bytes_sha256": hashlib.sha256(output).hexdigest(),
            "stdout": "hello from the release\n",
            "revoked_token": "0123456789abcdef",
        }
    finally:
        coord.process.terminate()
        coord.process.wait(timeout=30)
    coord.log_path.unlink()
    shutil.rmtree(target / "tmp", ignore_errors=True)
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    make(Path(sys.argv[1]))

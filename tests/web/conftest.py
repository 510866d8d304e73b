"""A real coordinator with a real pilot running jobs, and a headless chromium logged in."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from coordinator.logic.presets import TUTORIAL_JDL
from tests.conftest import RunningCoordinator, _stop_and_check, launch_coordinator
from tests.web.browser import chromium, wait_until

PILOT_SITE = "LCG.Portal.org"
TICKER_JDL = """[
    JobName = "ticker";
    Executable = "/bin/sh";
    Arguments = "-c 'i=0; while [ $i -lt 600 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done'";
    StdOutput = "StdOut";
    OutputSandbox = {"StdOut"};
]"""
FAILING_JDL = """[
    JobName = "fails";
    Executable = "/bin/false";
]"""
SCREENSHOT_ENV = "GRIDPILOT_SCREENSHOT_DIR"
"""Set it (to docs/web, say) and the browser tests also save their screenshots there."""


@dataclasses.dataclass
class Portal:
    coord: RunningCoordinator
    tokens: dict[str, str]
    jobs: dict[str, int]
    screenshots: Path
    downloads: Path
    pilot: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return self.coord.url

    def api(self, who: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = self.coord.headers(self.tokens[who])
        return requests.request(method, self.coord.api(path), headers=headers, timeout=10, **kwargs)

    def submit(self, who: str, jdl: str) -> list[int]:
        reply = self.api(who, "POST", "/jobs", json={"description": jdl})
        assert reply.status_code == 201, reply.text
        job_ids: list[int] = reply.json()["job_ids"]
        return job_ids

    def status(self, job_id: int) -> str:
        return str(self.api("admin", "GET", f"/jobs/{job_id}").json()["status"])

    def wait_status(self, job_id: int, wanted: set[str], timeout_s: float = 60.0) -> str:
        return str(
            wait_until(
                lambda: self.status(job_id) in wanted and self.status(job_id),
                timeout_s,
                f"job {job_id} to become one of {wanted}",
            )
        )


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    root = tmp_path_factory.mktemp("portal")
    coord = launch_coordinator(
        root / "coordinator", heartbeat_interval_s=1, match_retry_after_s=0.5, rate_limit_per_s=0
    )
    tokens = {
        "alice": coord.token("user", "alice", "vo1"),
        "bob": coord.token("user", "bob", "vo2"),
        "admin": coord.token("admin", "ops", "vo1"),
    }
    token_file = root / "pilot.token"
    token_file.write_text(coord.token("pilot", "factory", "vo1"))
    pilot = subprocess.Popen(
        [
            sys.executable, "-m", "pilot", "pilot", "--url", coord.url,
            "--token-file", str(token_file), "--workdir", str(root / "pilot"),
            "--idle-timeout-s", "600", "--poll-interval-s", "0.5", "--site", PILOT_SITE,
            "--ce", "ce.portal.org",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    world = Portal(coord, tokens, {}, root / "screenshots", root / "downloads", pilot)
    world.screenshots.mkdir()
    world.downloads.mkdir()
    try:
        (world.jobs["ticker"],) = world.submit("alice", TICKER_JDL)
        (world.jobs["hello"],) = world.submit("alice", TUTORIAL_JDL)
        (world.jobs["fails"],) = world.submit("alice", FAILING_JDL)
        yield world
    finally:
        _stop_pilot(world)
        _stop_and_check(coord)


def _stop_pilot(world: Portal) -> None:
    """Kill what still runs, then stop the pilot: warm, then cold, then SIGKILL."""
    for job_id in world.jobs.values():
        world.api("admin", "POST", f"/jobs/{job_id}/kill")
    for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if world.pilot.poll() is not None:
            return
        world.pilot.send_signal(sig)
        try:
            world.pilot.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def browser(portal: Portal) -> Iterator[Any]:
    with chromium(portal.downloads) as driver:
        yield driver


def login(driver: Any, portal: Portal, who: str) -> None:
    driver.delete_all_cookies()
    driver.get(portal.url + "/web/login")
    driver.find_element("id", "token").send_keys(portal.tokens[who])
    driver.find_element("id", "login-submit").click()
    wait_until(lambda: driver.find_element("id", "who-subject"), what="the signed-in header")


def shot(driver: Any, portal: Portal, name: str) -> Path:
    """Save a screenshot of the page as ``<name>.png`` (also in $GRIDPILOT_SCREENSHOT_DIR)."""
    path = portal.screenshots / f"{name}.png"
    driver.save_screenshot(str(path))
    extra = os.environ.get(SCREENSHOT_ENV)
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(extra) / path.name)
    return path


def wait_downloaded(directory: Path, name: str, timeout_s: float = 15.0) -> Path:
    target = directory / name

    def done() -> bool:
        return target.exists() and not (directory / f"{name}.crdownload").exists()

    wait_until(done, timeout_s, f"{name} to be downloaded")
    time.sleep(0.1)
    return target

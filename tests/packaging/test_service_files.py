"""The coordinator's service files: the systemd unit, the Dockerfile and the Apptainer
definition. Each is checked the way its tool reads it, then its command line is run here,
against this checkout's venv in place of the image's or host's install, up to a healthy
coordinator: that proves the command lines and settings, not just the syntax."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Union

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.packaging.service_files import (
    Instruction,
    dockerfile_env,
    parse_definition,
    parse_dockerfile,
    parse_environment_file,
    parse_unit,
)
from tests.services.ports import free_port

SYSTEMD = REPO_ROOT / "packaging" / "systemd"
UNIT = SYSTEMD / "gridpilot-coordinator.service"
ENV_FILE = SYSTEMD / "gridpilot-coordinator.env"
DOCKERFILE = REPO_ROOT / "packaging" / "container" / "Dockerfile"
DEFINITION = REPO_ROOT / "packaging" / "container" / "gridpilot-coordinator.def"
INSTALL_PREFIX = "/opt/gridpilot"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
STOPPED_CLEANLY = (0, -signal.SIGTERM)
"""uvicorn ends a graceful stop by re-raising the signal; systemd and Docker count a
service ended by its stop signal as stopped cleanly."""


@pytest.fixture
def serve() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; stopped (TERM, then KILL) after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start(
    started: list[subprocess.Popen[bytes]], argv: Sequence[str], env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        process = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    started.append(process)
    return process


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log: Path, verify: Union[bool, str] = True
) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()}"
        try:
            reply = requests.get(f"{url}/health", timeout=1, verify=verify)
            if reply.status_code == 200:
                body: dict[str, str] = reply.json()
                return body
        except (requests.ConnectionError, requests.Timeout):  # a slow first answer under load
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy:\n{log.read_text()}")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required in CI (tests/setup-system.sh installs it)")
        pytest.skip(f"{tool} not installed")
    return path


# --- systemd -----------------------------------------------------------------------------


def service_settings() -> dict[str, str]:
    return dict(parse_unit(UNIT.read_text())["Service"])


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = _need("systemd-analyze")
    unit = tmp_path / UNIT.name
    # verify checks that ExecStart's program exists: point it at this checkout's venv.
    unit.write_text(UNIT.read_text().replace(INSTALL_PREFIX, str(REPO_ROOT)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # It does report mistakes (a misspelt option), so the empty output above means something.
    unit.write_text(unit.read_text().replace("PrivateTmp=", "PrivateTnp="))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert "Unknown key 'PrivateTnp'" in done.stderr


def test_the_unit_confines_the_service_to_its_data_dir() -> None:
    service = service_settings()
    env = parse_environment_file(ENV_FILE.read_text())
    data_dir = env["GRIDPILOT_DATA_DIR"]
    assert data_dir == f"/var/lib/{service['StateDirectory']}"
    assert service["ReadWritePaths"] == data_dir
    assert service["ProtectSystem"] == "strict"
    assert (service["NoNewPrivileges"], service["PrivateTmp"]) == ("yes", "yes")
    assert service["User"] not in ("", "root")
    assert service["ExecStart"].startswith(f"{INSTALL_PREFIX}/.venv/bin/gridpilot serve")
    assert service["Restart"] == "on-failure"


def _dev_certs(directory: Path) -> None:
    subprocess.run(
        [str(VENV_BIN / "gridpilot"), "certs", "dev", "--out", str(directory)],
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
def test_the_unit_s_command_and_settings_serve_https_and_stop_on_its_signal(
    tmp_path: Path, serve: list[subprocess.Popen[bytes]]
) -> None:
    service = service_settings()
    port = free_port()
    _dev_certs(tmp_path / "tls")
    # The shipped settings file, with this machine's paths and a free port.
    env_text = ENV_FILE.read_text().replace("/etc/gridpilot/tls", str(tmp_path / "tls"))
    env_text = env_text.replace("/var/lib/gridpilot", str(tmp_path / "data"))
    env = {**parse_environment_file(env_text), "GRIDPILOT_PORT": str(port)}
    (tmp_path / "data").mkdir(mode=0o700)  # StateDirectory= creates it
    argv = service["ExecStart"].replace(INSTALL_PREFIX, str(REPO_ROOT)).split()
    # systemd starts services with a clean environment: PATH and the EnvironmentFile only.
    log = tmp_path / "service.log"
    process = start(serve, argv, {"PATH": SYSTEM_PATH, **env}, log)
    url, ca = f"https://127.0.0.1:{port}", str(tmp_path / "tls" / "ca.pem")
    assert wait_healthy(url, process, log, ca)["status"] == "ok"
    assert (tmp_path / "data" / "gridpilot.db").is_file()
    # A pilot keeps its connection open between calls; the stop must not wait for it.
    with requests.Session() as pilot_session:
        assert pilot_session.get(f"{url}/health", verify=ca, timeout=5).status_code == 200
        process.send_signal(getattr(signal, service["KillSignal"]))
        code = process.wait(timeout=float(service["TimeoutStopSec"]) - 5)
    assert code in STOPPED_CLEANLY, log.read_text()
    assert "Finished server process" in log.read_text()


# --- Docker ------------------------------------------------------------------------------


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    [instruction] = [ins for ins in stage if ins.keyword == keyword]
    return instruction


def test_dockerfile_copies_only_what_the_checkout_has() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    copies = [ins for ins in instructions if ins.keyword in ("COPY", "ADD")]
    assert copies
    for copy in copies:
        if copy.arguments.startswith("--from="):
            continue
        *sources, _destination = copy.arguments.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"line {copy.line}: {source} is not in the repo"


def test_dockerfile_runs_the_coordinator_unprivileged_on_a_volume() -> None:
    stage = final_stage(parse_dockerfile(DOCKERFILE.read_text()))
    assert only(stage, "USER").arguments not in ("root", "0")
    env = dockerfile_env(only(stage, "ENV"))
    assert only(stage, "VOLUME").exec_form() == [env["GRIDPILOT_DATA_DIR"]]
    cmd = only(stage, "CMD").exec_form()
    assert cmd[:2] == ["gridpilot", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert only(stage, "EXPOSE").arguments == port
    assert f"127.0.0.1:{port}/health" in only(stage, "HEALTHCHECK").arguments


@pytest.mark.slow
def test_dockerfile_cmd_serves_and_its_healthcheck_says_healthy(
    tmp_path: Path, serve: list[subprocess.Popen[bytes]]
) -> None:
    stage = final_stage(parse_dockerfile(DOCKERFILE.read_text()))
    env = dockerfile_env(only(stage, "ENV"))
    cmd = only(stage, "CMD").exec_form()
    image_port, port = cmd[cmd.index("--port") + 1], str(free_port())
    # The image's venv is this checkout's; its volume a temporary dir; its port a free one.
    env["PATH"] = env["PATH"].replace(f"{INSTALL_PREFIX}/.venv/bin", str(VENV_BIN))
    env["PATH"] = env["PATH"].replace("$PATH", SYSTEM_PATH)
    env["GRIDPILOT_DATA_DIR"] = str(tmp_path / "volume")
    argv = [port if arg == image_port else arg for arg in cmd]
    log = tmp_path / "cmd.log"
    process = start(serve, argv, env, log)
    wait_healthy(f"http://127.0.0.1:{port}", process, log)
    healthcheck = [
        arg.replace(f":{image_port}/", f":{port}/")
        for arg in only(stage, "HEALTHCHECK").exec_form()
    ]
    done = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    process.terminate()  # what STOPSIGNAL asks for
    assert only(stage, "STOPSIGNAL").arguments == "SIGTERM"
    assert process.wait(timeout=10) in STOPPED_CLEANLY  # Docker's default stop timeout
    # Once stopped, the same healthcheck reports the container unhealthy.
    assert subprocess.run(healthcheck, env=env, capture_output=True).returncode != 0


# --- Apptainer ---------------------------------------------------------------------------


def test_definition_header_sections_and_files() -> None:
    header, sections = parse_definition(DEFINITION.read_text())
    assert header["bootstrap"] == "docker"
    assert header["from"].startswith("python:3.")
    assert {"files", "post", "environment", "runscript", "startscript"} <= set(sections)
    for line in sections["files"].splitlines():
        source, destination = line.split()
        assert (REPO_ROOT / source).exists(), f"%files: {source} is not in the repo"
        assert destination.startswith(f"{INSTALL_PREFIX}/src/")
    assert "gridpilot serve" in sections["runscript"]
    assert "gridpilot serve" in sections["startscript"]


@pytest.mark.slow
def test_definition_runscript_serves_with_its_environment(
    tmp_path: Path, serve: list[subprocess.Popen[bytes]]
) -> None:
    _, sections = parse_definition(DEFINITION.read_text())
    port = free_port()
    # Apptainer sources %environment, then runs %runscript with the run's arguments.
    script = f"{sections['environment']}\n{sections['runscript']}\n"
    script = script.replace(f"{INSTALL_PREFIX}/.venv/bin", str(VENV_BIN))
    env = {"PATH": SYSTEM_PATH, "GRIDPILOT_DATA_DIR": str(tmp_path / "bound")}
    log = tmp_path / "run.log"
    argv = ["/bin/sh", "-c", script, "runscript", "--port", str(port)]
    process = start(serve, argv, env, log)
    wait_healthy(f"http://127.0.0.1:{port}", process, log)
    assert (tmp_path / "bound" / "gridpilot.db").is_file()
    test_body = sections["environment"] + "\n" + sections["test"]
    test_body = test_body.replace(f"{INSTALL_PREFIX}/.venv/bin", str(VENV_BIN))
    assert subprocess.run(["/bin/sh", "-ec", test_body], env=env, timeout=60).returncode == 0

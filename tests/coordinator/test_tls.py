"""HTTPS: ``gridpilot certs dev``, ``gridpilot serve --tls-cert/--tls-key``, clients that
verify the coordinator's certificate by default, and a pilot running a job over TLS."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from coordinator.logic.auth import issue_token, load_or_create_signing_key
from protocol import Role
from tests.services.ports import free_port

STARTUP_TIMEOUT_S = 30.0


@dataclasses.dataclass
class TLSCoordinator:
    url: str
    data_dir: Path
    ca_file: Path
    log_path: Path

    def token(self, role: Role = Role.USER, subject: str = "alice", vo: str = "vo1") -> str:
        key = load_or_create_signing_key(self.data_dir)
        return issue_token(key, subject=subject, vo=vo, role=role, ttl_s=3600)


def gridpilot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    result = gridpilot("certs", "dev", "--out", str(out), "--host", "node1.example.org")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def tls_coordinator(
    certs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TLSCoordinator]:
    data_dir = tmp_path_factory.mktemp("tls-coordinator")
    port = free_port()
    log_path = data_dir / "server.log"
    args = ["serve", "--data-dir", str(data_dir), "--port", str(port)]
    args += ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem")]
    args += ["--heartbeat-interval-s", "1", "--match-retry-after-s", "0.5"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "coordinator", *args], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"https://localhost:{port}"
    try:
        _wait_healthy(url, certs / "ca.pem", process)
        yield TLSCoordinator(url, data_dir, certs / "ca.pem", log_path)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "Traceback" not in log_path.read_text()


def _wait_healthy(url: str, ca_file: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the TLS coordinator exited"
        try:
            if requests.get(f"{url}/health", verify=str(ca_file), timeout=1).ok:
                return
        except (requests.ConnectionError, requests.Timeout):  # a slow first answer under load
            time.sleep(0.05)
    raise AssertionError("the TLS coordinator did not become healthy")


def test_certs_dev_names_localhost_and_the_given_hosts(certs: Path) -> None:
    server = x509.load_pem_x509_certificate((certs / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "node1.example.org"}
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    assert server.issuer == ca.subject
    for key_file in ("ca-key.pem", "server-key.pem"):
        assert (certs / key_file).stat().st_mode & 0o077 == 0, f"{key_file} readable by others"


def test_client_with_the_ca_talks_to_the_tls_coordinator(tls_coordinator: TLSCoordinator) -> None:
    token = tls_coordinator.token(Role.ADMIN, subject="ops")
    env = {"GRIDPILOT_URL": tls_coordinator.url, "GRIDPILOT_TOKEN": token}
    by_option = gridpilot("--ca-bundle", str(tls_coordinator.ca_file), "status", "999", env=env)
    assert by_option.returncode == 1
    assert by_option.stderr == "gridpilot: no job 999\n"
    by_env = gridpilot(
        "token",
        "revoked",
        "--json",
        env={**env, "GRIDPILOT_CA_BUNDLE": str(tls_coordinator.ca_file)},
    )
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout) == []


def test_client_without_the_ca_fails_fast_with_a_clear_message(
    tls_coordinator: TLSCoordinator,
) -> None:
    env = {"GRIDPILOT_URL": tls_coordinator.url, "GRIDPILOT_TOKEN": tls_coordinator.token()}
    env["GRIDPILOT_CA_BUNDLE"] = ""
    started = time.monotonic()
    result = gridpilot("status", "1", env=env)
    assert result.returncode == 3  # unreachable: the coordinator cannot be talked to
    assert "its TLS certificate cannot be verified" in result.stderr
    assert "--ca-bundle" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 15, "an untrusted certificate must not be retried"


def test_plain_http_to_the_tls_port_is_refused(tls_coordinator: TLSCoordinator) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(tls_coordinator.url.replace("https", "http") + "/health", timeout=5)


@pytest.mark.slow
def test_pilot_runs_a_job_over_tls(tls_coordinator: TLSCoordinator, tmp_path: Path) -> None:
    user_env = {
        "GRIDPILOT_URL": tls_coordinator.url,
        "GRIDPILOT_TOKEN": tls_coordinator.token(vo="vo-tls"),
        "GRIDPILOT_CA_BUNDLE": str(tls_coordinator.ca_file),
    }
    jdl = tmp_path / "hello.jdl"
    jdl.write_text('Executable = "/bin/echo"; Arguments = "over tls"; StdOutput = "StdOut";')
    submitted = gridpilot("submit", "--json", str(jdl), env=user_env)
    assert submitted.returncode == 0, submitted.stderr
    (job_id,) = [json.loads(line)["job_id"] for line in submitted.stdout.splitlines()]
    token_file = tmp_path / "pilot.token"
    token_file.write_text(tls_coordinator.token(Role.PILOT, subject="factory", vo="vo-tls"))
    pilot = subprocess.run(
        [sys.executable, "-m", "pilot", "pilot", "--url", tls_coordinator.url,
         "--token-file", str(token_file), "--workdir", str(tmp_path / "work"),
         "--ca-bundle", str(tls_coordinator.ca_file),
         "--idle-timeout-s", "2", "--poll-interval-s", "0.5"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip
    assert pilot.returncode == 0, pilot.stderr
    status = gridpilot("status", "--json", str(job_id), env=user_env)
    assert json.loads(status.stdout)[0]["status"] == "Done", pilot.stderr


def test_pilot_without_the_ca_stops_with_unreachable(
    tls_coordinator: TLSCoordinator, tmp_path: Path
) -> None:
    token_file = tmp_path / "pilot.token"
    token_file.write_text(tls_coordinator.token(Role.PILOT, subject="factory", vo="vo-tls2"))
    env = {k: v for k, v in os.environ.items() if k != "GRIDPILOT_CA_BUNDLE"}
    pilot = subprocess.run(
        [sys.executable, "-m", "pilot", "pilot", "--url", tls_coordinator.url,
         "--token-file", str(token_file), "--workdir", str(tmp_path / "work"),
         "--idle-timeout-s", "2"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert pilot.returncode == 11, pilot.stderr
    assert "cannot verify the TLS certificate" in pilot.stderr


def _clock_and_reach(coordinator: TLSCoordinator, *extra: str) -> dict[str, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if k != "GRIDPILOT_CA_BUNDLE"}
    done = subprocess.run(
        [sys.executable, "-m", "pilot", "checks", "run", "--only", "clock",
         "--only", "coordinator", "--format", "json", "--url", coordinator.url, *extra],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    return {check["name"]: check for check in json.loads(done.stdout)["checks"]}


def test_the_clock_and_coordinator_checks_trust_the_pilots_ca_bundle(
    tls_coordinator: TLSCoordinator,
) -> None:
    """The pilot's ``ca_bundle`` reaches the checks that talk to the coordinator."""
    trusted = _clock_and_reach(tls_coordinator, "--ca-bundle", str(tls_coordinator.ca_file))
    assert trusted["coordinator"]["status"] == "ok", trusted["coordinator"]["message"]
    assert trusted["clock"]["status"] == "ok", trusted["clock"]["message"]
    assert "clock_offset_s" in trusted["clock"]["facts"]
    untrusted = _clock_and_reach(tls_coordinator)
    assert untrusted["coordinator"]["status"] == "fail"
    assert untrusted["clock"]["status"] == "unknown"
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted["clock"]["message"]


def test_serve_refuses_a_missing_key_clearly(certs: Path, tmp_path: Path) -> None:
    result = gridpilot(
        "serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()),
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(tmp_path / "missing.pem"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "TLS file not found" in result.stderr and "missing.pem" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_certificate_without_a_key(certs: Path, tmp_path: Path) -> None:
    result = gridpilot(
        "serve", "--data-dir", str(tmp_path / "data"), "--tls-cert", str(certs / "server.pem")
    )
    assert result.returncode == 2
    assert "both a certificate and a key" in result.stderr

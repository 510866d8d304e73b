"""Starting the coordinator in-process (as ``gridpilot demo`` does) and its settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from coordinator.logic.auth import issue_token, load_or_create_signing_key
from coordinator.server import start_in_thread
from coordinator.settings import Settings, SettingsError
from protocol import API_PREFIX, Role


def test_embedded_server_serves_and_stops(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, port=0)
    server = start_in_thread(settings)
    try:
        assert requests.get(f"{server.url}/health", timeout=5).json()["status"] == "ok"
        key = load_or_create_signing_key(tmp_path)
        token = issue_token(key, subject="alice", vo="vo1", role=Role.USER, ttl_s=60)
        body = {"description": json.dumps({"Executable": "/bin/true"}), "format": "json"}
        reply = requests.post(
            f"{server.url}{API_PREFIX}/jobs",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert reply.status_code == 201
    finally:
        server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/health", timeout=5)
    assert (tmp_path / "gridpilot.db").exists()


def test_settings_from_environment_and_overrides(tmp_path: Path) -> None:
    env = {"GRIDPILOT_PORT": "9000", "GRIDPILOT_MAX_SANDBOX_BYTES": "2048", "GRIDPILOT_HOST": "::1"}
    settings = Settings.from_env(tmp_path, env, port=9100, host=None)
    assert (settings.port, settings.max_sandbox_bytes, settings.host) == (9100, 2048, "::1")
    assert settings.database_url == f"sqlite:///{tmp_path / 'gridpilot.db'}"
    with pytest.raises(SettingsError, match="GRIDPILOT_PORT"):
        Settings.from_env(tmp_path, {"GRIDPILOT_PORT": "eighty"})

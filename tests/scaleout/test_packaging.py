"""The shipped scale-out files: haproxy's config is valid for haproxy itself, and the
replica settings file names only settings the coordinator has, in the form it reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from coordinator.settings import ENV_PREFIX, Settings
from tests.services.haproxy import Haproxy

PACKAGING = Path(__file__).resolve().parent.parent.parent / "packaging" / "scaleout"


def test_haproxy_accepts_the_shipped_config(tmp_path: Path) -> None:
    proxy = Haproxy(["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"], tmp_path / "log")
    checked = proxy.check_config()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout


def test_the_replica_settings_are_settings_the_coordinator_reads(tmp_path: Path) -> None:
    lines = (PACKAGING / "replica.env").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    fields = {field.name for field in dataclasses.fields(Settings)}
    ours = {key for key in pairs if key.startswith(ENV_PREFIX)}
    unknown = [
        key for key in ours if key.removeprefix(ENV_PREFIX).lower() not in fields | {"data_dir"}
    ]
    assert unknown == []
    assert {key for key in pairs if not key.startswith(ENV_PREFIX)} <= {
        "AWS_ENDPOINT_URL",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    settings = Settings.from_env(tmp_path, environ=pairs)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.sandbox_store.startswith("s3://")
    assert settings.signing_key_file == "/etc/gridpilot/signing-key.pem"

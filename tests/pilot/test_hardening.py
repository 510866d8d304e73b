"""What the pilot does at start so its payloads cannot take its identity (issue 12, item 4):
the token out of the environment, the pilot not dumpable, the token file removed or warned
about. Real files and the real prctl; the configuration as a site writes it."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from pilot.config import load_config
from pilot.hardening import harden, open_private, payloads_share_pilot_uid, prepare_workdir
from wrapper.prctl import is_dumpable, set_dumpable


def config_for(tmp_path: Path, **settings: object) -> object:
    values = {"url": "http://127.0.0.1:1", "token": "t", "workdir": str(tmp_path / "work")}
    return load_config({**values, **settings}, {})


@pytest.fixture(autouse=True)
def dumpable_again() -> object:
    yield None
    set_dumpable(True)  # this test process goes on being the test runner


def test_the_token_leaves_the_environment_and_the_pilot_is_not_dumpable(tmp_path: Path) -> None:
    environ = {"GRIDPILOT_TOKEN": "secret", "PATH": "/bin"}
    harden(config_for(tmp_path), None, environ)  # type: ignore[arg-type]
    assert environ == {"PATH": "/bin"}
    assert is_dumpable() is False


def test_a_token_file_the_site_lets_go_is_removed_once_read(tmp_path: Path) -> None:
    token_file = tmp_path / "pilot.token"
    token_file.write_text("secret")
    harden(config_for(tmp_path, remove_token_file=True), token_file, {})  # type: ignore[arg-type]
    assert not token_file.exists()


def test_a_token_file_plain_payloads_could_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "pilot.token"
    token_file.write_text("secret")
    with caplog.at_level(logging.WARNING, logger="pilot.hardening"):
        harden(config_for(tmp_path), token_file, {})  # type: ignore[arg-type]
    assert token_file.exists()
    assert f"token file {token_file} stays readable to payloads" in caplog.text
    caplog.clear()
    containers_only = config_for(tmp_path, container_required=True)
    with caplog.at_level(logging.WARNING, logger="pilot.hardening"):
        harden(containers_only, token_file, {})  # type: ignore[arg-type]
    assert "stays readable" not in caplog.text


def test_plain_payloads_share_the_pilots_uid_unless_root_gives_them_their_own(
    tmp_path: Path,
) -> None:
    assert payloads_share_pilot_uid(config_for(tmp_path))  # type: ignore[arg-type]
    own_uids = config_for(tmp_path, payload_uids="61000-61009")
    assert payloads_share_pilot_uid(own_uids) is (os.geteuid() != 0)  # type: ignore[arg-type]


def test_a_token_file_others_could_read_becomes_the_pilots_alone(tmp_path: Path) -> None:
    """Jobs under their own uids (payload_uids) must not read a token file left 0644."""
    token_file = tmp_path / "pilot.token"
    token_file.write_text("secret")
    token_file.chmod(0o644)
    harden(config_for(tmp_path), token_file, {})  # type: ignore[arg-type]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text() == "secret"


def test_the_work_dir_is_the_pilots_alone_or_passable_by_job_uids(tmp_path: Path) -> None:
    """0700 for a pilot whose jobs share its uid (an older pilot's 0755 one too); 0711 for a
    root pilot with payload_uids, whose jobs pass through to their own dirs."""
    workdir = tmp_path / "work"
    workdir.mkdir(mode=0o755)
    workdir.chmod(0o755)
    prepare_workdir(config_for(tmp_path))  # type: ignore[arg-type]
    assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
    prepare_workdir(config_for(tmp_path, payload_uids="61000-61009"))  # type: ignore[arg-type]
    expected = 0o711 if os.geteuid() == 0 else 0o700
    assert stat.S_IMODE(workdir.stat().st_mode) == expected


def test_a_log_file_is_made_private_even_when_it_was_there_before(tmp_path: Path) -> None:
    log = tmp_path / "pilot.log"
    log.write_text("an older pilot's lines\n")
    log.chmod(0o644)
    open_private(log)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert log.read_text() == "an older pilot's lines\n"  # appended to, never truncated
    fresh = tmp_path / "fresh.log"
    open_private(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600

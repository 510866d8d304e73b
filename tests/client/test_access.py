"""Where a command's token comes from, and self-service login: an admin-issued login
credential that ``gridpilot login`` exchanges for short-lived tokens, renewed as needed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from coordinator.logic.auth import verify_token
from tests.conftest import RunningCoordinator


class Shell:
    """``gridpilot`` commands with a clean environment and a session file of their own."""

    def __init__(self, coord: RunningCoordinator, home: Path) -> None:
        self.coord = coord
        self.home = home
        self.session_file = home / "session.json"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
        self.env["GRIDPILOT_SESSION_FILE"] = str(self.session_file)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "client", *args],
            cwd=self.home,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def token_file(self, name: str, token: str) -> Path:
        path = self.home / name
        path.write_text(token + "\n")
        return path

    def whoami(self, *args: str, **env: str) -> dict[str, Any]:
        result = self.run(*args, "whoami", "--json", **env)
        assert result.returncode == 0, result.stderr
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def credential(self, subject: str = "alice", *extra: str) -> Path:
        made = self.run(
            "token", "create", "--data-dir", str(self.coord.data_dir), "--login",
            "--subject", subject, "--vo", "vo1", *extra,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "login credential id" in made.stderr
        return self.token_file(f"{subject}.credential", made.stdout.strip())


@pytest.fixture
def shell(coordinator: RunningCoordinator, tmp_path: Path) -> Shell:
    return Shell(coordinator, tmp_path)


def test_the_command_line_wins_over_the_environment(shell: Shell) -> None:
    c = shell.coord
    alice = c.token(subject="alice")
    bob = shell.token_file("bob.token", c.token(subject="bob"))
    carol = shell.token_file("carol.token", c.token(subject="carol"))
    env = {"GRIDPILOT_URL": c.url, "GRIDPILOT_TOKEN": alice}
    assert shell.whoami(**env)["subject"] == "alice"
    assert shell.whoami("--token-file", str(bob), **env)["subject"] == "bob"
    # After the sub-command: accepted too, and it wins over what came before it.
    after = shell.run(
        "--token-file", str(bob), "whoami", "--json", "--token-file", str(carol), **env
    )
    assert json.loads(after.stdout)["subject"] == "carol"
    both = shell.run("whoami", "--token", alice, "--token-file", str(bob), **env)
    assert both.returncode == 2
    assert both.stderr == "gridpilot: give --token or --token-file, not both\n"
    # Both in the environment: the pilot's order (the token), and a word about it.
    mixed = shell.run("whoami", "--json", GRIDPILOT_URL=c.url, GRIDPILOT_TOKEN=alice,
                      GRIDPILOT_TOKEN_FILE=str(bob))  # fmt: skip
    assert json.loads(mixed.stdout)["subject"] == "alice"
    assert "both GRIDPILOT_TOKEN and GRIDPILOT_TOKEN_FILE are set: using GRIDPILOT_TOKEN" in (
        mixed.stderr
    )
    # The URL typed after the command wins over the environment's.
    wrong = {"GRIDPILOT_URL": "http://127.0.0.1:9", "GRIDPILOT_TOKEN": alice}
    assert shell.whoami("--url", c.url, **wrong)["url"] == c.url


def test_login_keeps_a_short_lived_token_and_whoami_tells_who(shell: Shell) -> None:
    c = shell.coord
    credential = shell.credential("alice")
    logged = shell.run("login", "--credential-file", str(credential), GRIDPILOT_URL=c.url)
    assert logged.returncode == 0, logged.stderr
    assert f"Logged in to {c.url} as alice (VO vo1, role user)" in logged.stdout
    assert stat.S_IMODE(shell.session_file.stat().st_mode) == 0o600
    session = json.loads(shell.session_file.read_text())
    claims = verify_token(c.signing_key.public_key(), session["token"])
    assert (claims.subject, claims.vo) == ("alice", "vo1")
    lifetime_h = (claims.expires_at.timestamp() - os.path.getmtime(shell.session_file)) / 3600
    assert 11.9 < lifetime_h <= 12.0  # the coordinator's login_token_ttl_s

    # No URL, no token: the session has both.
    me = shell.run("whoami")
    assert me.returncode == 0, me.stderr
    assert "subject     : alice" in me.stdout
    assert "token from  : the login session" in me.stdout
    submitted = shell.run("jobs")
    assert submitted.returncode == 0, submitted.stderr
    # A token typed on the command line still wins over the session.
    bob = shell.token_file("bob.token", c.token(subject="bob"))
    assert shell.whoami("--token-file", str(bob))["subject"] == "bob"

    out = shell.run("logout")
    assert out.stdout.startswith("Logged out")
    assert not shell.session_file.exists()
    assert shell.run("whoami").returncode == 2  # no URL any more


def test_a_token_about_to_expire_is_renewed_with_the_credential(shell: Shell) -> None:
    c = shell.coord
    credential = shell.credential("alice")
    shell.run("login", "--credential-file", str(credential), "--ttl-s", "120", GRIDPILOT_URL=c.url)
    first = json.loads(shell.session_file.read_text())["token_id"]
    assert shell.whoami()["token_id"] != first  # 120 s left is within the renewal margin
    renewed = json.loads(shell.session_file.read_text())
    assert renewed["token_id"] != first
    assert shell.whoami()["token_id"] == renewed["token_id"]


def test_revoking_the_credential_refuses_the_tokens_it_gave(shell: Shell) -> None:
    c = shell.coord
    credential = shell.credential("alice")
    assert (
        shell.run("login", "--credential-file", str(credential), GRIDPILOT_URL=c.url).returncode
        == 0
    )
    credential_id = verify_token(
        c.signing_key.public_key(), credential.read_text().strip()
    ).token_id
    admin = c.token("admin", subject="ops")
    revoked = shell.run(
        "token", "revoke", credential_id, GRIDPILOT_URL=c.url, GRIDPILOT_TOKEN=admin
    )
    assert revoked.returncode == 0, revoked.stderr
    refused = shell.run("status", "1")
    assert refused.returncode == 4
    assert f"the login credential {credential_id} this token came from has been revoked" in (
        refused.stderr
    )


def test_a_login_credential_is_not_an_access_token(shell: Shell) -> None:
    c = shell.coord
    credential = shell.credential("alice").read_text().strip()
    refused = shell.run("status", "1", GRIDPILOT_URL=c.url, GRIDPILOT_TOKEN=credential)
    assert refused.returncode == 4
    assert "this is a login credential, not an access token" in refused.stderr
    # An access token cannot be exchanged for another one.
    reply = requests.post(
        c.api("/tokens/exchange"), json={}, headers=c.headers(c.token()), timeout=10
    )
    assert reply.status_code == 403
    pilot = shell.run(
        "token", "create", "--data-dir", str(c.data_dir), "--login", "--role", "pilot",
        "--subject", "factory", "--vo", "vo1",
    )  # fmt: skip
    assert pilot.returncode == 2
    assert "login credentials are for people" in pilot.stderr


def test_token_create_refuses_a_dir_with_no_coordinator(shell: Shell, tmp_path: Path) -> None:
    typo = tmp_path / "gridpilot-dta"
    refused = shell.run("token", "create", "--data-dir", str(typo), "--subject", "a", "--vo", "v")
    assert refused.returncode == 2
    assert "holds no coordinator" in refused.stderr and "--init" in refused.stderr
    assert not typo.exists()
    made = shell.run("token", "create", "--data-dir", str(typo), "--init", "--subject", "a",
                     "--vo", "v")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (typo / "signing-key.pem").is_file()

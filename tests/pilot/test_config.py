from __future__ import annotations

from pathlib import Path

import pytest

from pilot.config import load_config
from pilot.errors import ConfigError


def _base(tmp_path: Path) -> dict[str, object]:
    return {"url": "http://c:8080/", "token": "t", "workdir": str(tmp_path)}


def test_cli_beats_env_beats_file_beats_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "pilot.yaml"
    config_file.write_text("pilot:\n  idle_timeout_s: 5\n  poll_interval_s: 7\n  site: FILE.site\n")
    env = {"GRIDPILOT_POLL_INTERVAL_S": "3", "GRIDPILOT_SITE": "ENV.site"}
    config = load_config({**_base(tmp_path), "site": "CLI.site"}, env, config_file)
    assert config.site == "CLI.site"
    assert config.poll_interval_s == 3.0
    assert config.idle_timeout_s == 5.0
    assert config.kill_grace_s == 5.0
    assert config.url == "http://c:8080"


def test_token_comes_from_a_file_and_is_not_shown(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("secret-token\n")
    values = {**_base(tmp_path), "token": None, "token_file": token_file}
    config = load_config(values, {}, None)
    assert config.token == "secret-token"
    assert "secret-token" not in repr(config)


def test_env_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-env-file")
    config = load_config({"url": "http://x", "workdir": str(tmp_path)},
                         {"GRIDPILOT_TOKEN_FILE": str(token_file)})  # fmt: skip
    assert config.token == "from-env-file"


def test_check_options_from_yaml(tmp_path: Path) -> None:
    config_file = tmp_path / "pilot.yaml"
    config_file.write_text(
        "checks:\n  disabled: [python]\n  options:\n    disk: {min_free_mb: 10}\n"
    )
    config = load_config(_base(tmp_path), {}, config_file)
    assert config.disabled_checks == ("python",)
    assert config.check_options == {"disk": {"min_free_mb": 10}}


@pytest.mark.parametrize(
    ("values", "env", "message"),
    [
        ({"token": "t", "workdir": "/w"}, {}, "missing url"),
        ({"url": "http://x", "workdir": "/w"}, {}, "missing token"),
        ({"url": "http://x", "token": "t", "workdir": "/w"}, {"GRIDPILOT_CORES": "many"}, "cores"),
        (
            {"url": "http://x", "token": "t", "workdir": "/w"},
            {"GRIDPILOT_VERIFY_TLS": "maybe"},
            "verify_tls",
        ),
        (
            {"url": "http://x", "token": "t", "workdir": "/w", "token_file": "/nonexistent/t"},
            {},
            None,
        ),
    ],
)
def test_bad_configuration_is_a_clear_error(
    values: dict[str, object], env: dict[str, str], message: str | None
) -> None:
    if message is None:
        load_config(values, env)  # a token given directly wins over an unreadable file
        return
    with pytest.raises(ConfigError, match=message):
        load_config(values, env)


def test_unknown_yaml_setting_is_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "pilot.yaml"
    config_file.write_text("idle_timeout: 5\n")
    with pytest.raises(ConfigError, match="unknown pilot setting"):
        load_config(_base(tmp_path), {}, config_file)


def test_token_file_on_the_command_line_beats_a_token_in_the_environment(tmp_path: Path) -> None:
    """A user's GRIDPILOT_TOKEN in the shell must not replace the pilot's own token."""
    token_file = tmp_path / "pilot.token"
    token_file.write_text("pilot-token")
    values = {"url": "http://x", "workdir": str(tmp_path), "token_file": token_file}
    config = load_config(values, {"GRIDPILOT_TOKEN": "user-token"})
    assert config.token == "pilot-token"

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from pilot.config import SETTINGS, WRAPPER_SETTINGS, PilotConfig, _field_type, load_config
from pilot.errors import ConfigError
from wrapper.config import ContainerSettings, WrapperConfig


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
    assert config.wrapper.kill_grace_s == 5.0
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


# -- one config: every flat setting name reaches its place, from the environment and YAML --

SAMPLES: dict[str, tuple[str, object]] = {
    "str": ("site-x", "site-x"),
    "Optional[str]": ("/etc/ca.pem", "/etc/ca.pem"),
    "float": ("2.5", 2.5),
    "Optional[float]": ("2.5", 2.5),
    "int": ("7", 7),
    "Optional[int]": ("7", 7),
    "bool": ("no", False),
    "tuple[str, ...]": ("a, b", ("a", "b")),
}
NAMED_SAMPLES: dict[str, tuple[str, object]] = {
    "payload_uids": ("61000-61009", "61000-61009"),
    "slot_policy": ("smallest_first", "smallest_first"),
}
"""Settings whose text is checked beyond its type (a range, one of a few words)."""
REQUIRED = ("url", "token", "workdir")


def _setting(config: PilotConfig, name: str) -> object:
    """A flat setting's value, wherever it lives in the nested config."""
    if name not in WRAPPER_SETTINGS:
        return getattr(config, name)
    place: object = config.wrapper
    for part in WRAPPER_SETTINGS[name]:
        place = getattr(place, part)
    return place


def _sample(name: str) -> tuple[str, object]:
    if name in NAMED_SAMPLES:
        return NAMED_SAMPLES[name]
    kind = _field_type(name)
    assert kind in SAMPLES, f"no sample value for {name} ({kind}): add one"
    return SAMPLES[kind]


@pytest.mark.parametrize("name", [n for n in SETTINGS if n not in REQUIRED])
def test_every_setting_works_from_the_environment(tmp_path: Path, name: str) -> None:
    text, expected = _sample(name)
    config = load_config(_base(tmp_path), {f"GRIDPILOT_{name.upper()}": text})
    assert _setting(config, name) == expected


@pytest.mark.parametrize("name", [n for n in SETTINGS if n not in REQUIRED])
def test_every_setting_works_as_a_yaml_key(tmp_path: Path, name: str) -> None:
    _, expected = _sample(name)
    value = list(expected) if isinstance(expected, tuple) else expected
    config_file = tmp_path / "pilot.yaml"
    config_file.write_text(yaml.safe_dump({"pilot": {name: value}}))
    assert _setting(load_config(_base(tmp_path), {}, config_file), name) == expected


def test_the_pilot_runs_jobs_with_the_wrappers_own_defaults(tmp_path: Path) -> None:
    """No second set of defaults to drift: an unset setting is the wrapper's default."""
    config = load_config(_base(tmp_path), {})
    assert config.wrapper == WrapperConfig(containers=ContainerSettings(state_dir=tmp_path))
    assert config.wrapper.max_output_sandbox_bytes == 2 * 1024**3


def test_full_scan_interval_is_a_setting(tmp_path: Path) -> None:
    config = load_config(_base(tmp_path), {"GRIDPILOT_FULL_SCAN_INTERVAL_S": "30"})
    assert config.wrapper.watchdog.full_scan_interval_s == 30.0


def _documented_settings() -> set[str]:
    """Setting names in the first column of the configuration tables of the docs."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    sections = [
        (docs / "pilot.md", "## Configuration"),
        (docs / "wrapper.md", "## Site configuration"),
        (docs / "wrapper.md", "### Site settings"),
    ]
    names: set[str] = set()
    for path, heading in sections:
        lines = path.read_text(encoding="utf-8").split(heading, 1)[1].splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("|"))
        for line in itertools.takewhile(lambda row: row.startswith("|"), lines[start + 2 :]):
            names.update(re.findall(r"`([a-z][a-z0-9_]*)`", line.split("|")[1]))
    return names


def test_every_documented_setting_exists() -> None:
    documented = _documented_settings()
    assert {"container_runtimes", "max_processes", "min_time_left_s"} <= documented
    assert documented - set(SETTINGS) == set()

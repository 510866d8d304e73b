"""The ``checks:`` section: what a site writes, and clear errors naming the bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from checks.config import (
    ChecksConfig,
    ChecksConfigError,
    CheckSettings,
    load_checks_config,
    parse_checks_config,
)
from checks.discovery import discover
from pilot.config import load_config
from pilot.errors import ConfigError

SITE_CONFIG = """
pilot:
  url: https://coordinator.example.org
checks:
  disabled: [gpu]
  entry_points: false
  search_path: [site-checks]
  refs:
    scratch: site_checks:scratch
  script_dirs: [/etc/gridpilot/probes]
  settings:
    disk: {fatal: false, timeout_s: 20, interval_s: 600}
    cvmfs: {fatal: true}
    load: {enabled: false}
  options:
    cvmfs: {repositories: [atlas.cern.ch]}
    disk: {min_free_mb: 20480}
"""


def test_a_site_config_is_read_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pilot.yaml"
    path.write_text(SITE_CONFIG)
    config = load_checks_config(path)
    assert config.disabled == frozenset({"gpu"})
    assert config.entry_points is False
    assert config.search_path == (tmp_path / "site-checks",)
    assert config.refs == (("scratch", "site_checks:scratch"),)
    assert config.script_dirs == (Path("/etc/gridpilot/probes"),)
    assert config.settings["disk"] == CheckSettings(fatal=False, timeout_s=20, interval_s=600)
    assert config.options["cvmfs"] == {"repositories": ["atlas.cern.ch"]}
    assert not config.is_enabled("gpu") and not config.is_enabled("load")
    assert config.is_enabled("disk")


def test_settings_change_what_discovery_returns() -> None:
    config = parse_checks_config(yaml.safe_load(SITE_CONFIG)["checks"])
    specs = {spec.name: spec for spec in discover(config)}
    assert "gpu" not in specs and "load" not in specs
    assert (specs["disk"].fatal, specs["disk"].timeout_s, specs["disk"].interval_s) == (
        False,
        20,
        600,
    )
    assert specs["cvmfs"].fatal is True
    assert specs["memory"].fatal is True  # untouched: as declared
    assert specs["scratch"].ref == "site_checks:scratch"


def test_a_list_of_refs_names_each_check_after_its_function() -> None:
    config = parse_checks_config({"refs": ["a.b:first", "c:second"]})
    assert config.refs == (("first", "a.b:first"), ("second", "c:second"))


def test_no_section_means_defaults() -> None:
    assert parse_checks_config(None) == ChecksConfig()
    assert ChecksConfig().entry_points is True


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"disable": ["gpu"]}, "checks.disable"),
        ({"disabled": "gpu"}, "checks.disabled"),
        ({"disabled": ["has space"]}, "checks.disabled[0]"),
        ({"entry_points": "yes"}, "checks.entry_points"),
        ({"search_path": [3]}, "checks.search_path[0]"),
        ({"refs": {"scratch": "no_colon"}}, "checks.refs.scratch"),
        ({"refs": ["mod:"]}, "checks.refs[0]"),
        ({"settings": {"disk": {"fatal": "no"}}}, "checks.settings.disk.fatal"),
        ({"settings": {"disk": {"timeout_s": 0}}}, "checks.settings.disk.timeout_s"),
        ({"settings": {"disk": {"timeout_s": 7200}}}, "checks.settings.disk.timeout_s"),
        ({"settings": {"disk": {"interval": 60}}}, "checks.settings.disk.interval"),
        ({"settings": {"disk": {"enabled": 1}}}, "checks.settings.disk.enabled"),
        ({"options": {"disk": [1]}}, "checks.options.disk"),
        ({"options": []}, "checks.options"),
        ("checks", "checks"),
    ],
)
def test_each_mistake_names_its_key(section: Any, key: str) -> None:
    with pytest.raises(ChecksConfigError) as raised:
        parse_checks_config(section)
    assert str(raised.value).startswith(key + ":"), raised.value


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ChecksConfigError, match="cannot read config"):
        load_checks_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks: [unclosed")
    with pytest.raises(ChecksConfigError, match="cannot read config"):
        load_checks_config(bad)


_YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "disabled",
                "entry_points",
                "search_path",
                "refs",
                "script_dirs",
                "settings",
                "options",
            ]
        ),
        _YAML_VALUES,
        max_size=4,
    )
)
def test_any_section_parses_or_fails_with_a_config_error(section: dict[str, Any]) -> None:
    try:
        config = parse_checks_config(section)
    except ChecksConfigError as exc:
        assert str(exc).startswith("checks")
    else:
        assert isinstance(config, ChecksConfig)


def test_the_pilot_config_carries_the_section_and_names_bad_keys(tmp_path: Path) -> None:
    path = tmp_path / "pilot.yaml"
    path.write_text(SITE_CONFIG)
    env = {"GRIDPILOT_TOKEN": "t", "GRIDPILOT_WORKDIR": str(tmp_path)}
    config = load_config({}, env, path)
    assert config.checks == load_checks_config(path)
    assert config.check_options["disk"] == {"min_free_mb": 20480}
    assert set(config.disabled_checks) == {"gpu", "load"}
    path.write_text("pilot: {url: http://x}\nchecks:\n  settings: {disk: {timeout_s: -1}}\n")
    with pytest.raises(ConfigError, match=r"checks\.settings\.disk\.timeout_s: must be > 0"):
        load_config({}, env, path)

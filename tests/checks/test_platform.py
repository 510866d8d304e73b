"""Platform strings from real os-release contents."""

from __future__ import annotations

import re
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checks.builtin.platform import normalise_arch, os_tag, parse_os_release, platform_string

ROCKY_9 = """\
NAME="Rocky Linux"
VERSION="9.3 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"
ANSI_COLOR="0;32"
"""
RHEL_9 = 'NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.2"\n'
CENTOS_STREAM_9 = 'NAME="CentOS Stream"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="9"\n'
CENTOS_7 = (
    'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\n'
)
ALMA_8 = 'NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"\n'
UNLISTED_REBUILD = 'ID="newel"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.5"\n'
DEBIAN_12 = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""
DEBIAN_SID = 'PRETTY_NAME="Debian GNU/Linux trixie/sid"\nNAME="Debian GNU/Linux"\nID=debian\n'
UBUNTU_22 = """\
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
"""
FEDORA_40 = 'NAME="Fedora Linux"\nVERSION="40 (Container Image)"\nID=fedora\nVERSION_ID=40\n'
AMAZON_2 = 'NAME="Amazon Linux"\nID="amzn"\nID_LIKE="centos rhel fedora"\nVERSION_ID="2"\n'
LEAP_15 = 'NAME="openSUSE Leap"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\nVERSION_ID="15.5"\n'


@pytest.mark.parametrize(
    ("text", "machine", "expected"),
    [
        (ROCKY_9, "x86_64", "x86_64-el9"),
        (RHEL_9, "x86_64", "x86_64-el9"),
        (CENTOS_STREAM_9, "aarch64", "aarch64-el9"),
        (CENTOS_7, "x86_64", "x86_64-el7"),
        (ALMA_8, "ppc64le", "ppc64le-el8"),
        (UNLISTED_REBUILD, "x86_64", "x86_64-el9"),
        (DEBIAN_12, "x86_64", "x86_64-debian12"),
        (DEBIAN_12, "arm64", "aarch64-debian12"),
        (DEBIAN_SID, "x86_64", "x86_64-debian"),
        (UBUNTU_22, "amd64", "x86_64-ubuntu22"),
        (FEDORA_40, "x86_64", "x86_64-fedora40"),
        (AMAZON_2, "aarch64", "aarch64-amzn2"),
        (LEAP_15, "x86_64", "x86_64-opensuseleap15"),
        ("", "x86_64", "x86_64-unknown"),
        ('VERSION_ID="9"\n', "", "unknown-unknown"),
    ],
)
def test_platform_string(text: str, machine: str, expected: str) -> None:
    assert platform_string(parse_os_release(text), machine) == expected


def test_parse_keeps_quoted_values_and_skips_comments_and_junk() -> None:
    text = (
        '# comment\nPRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"\nBROKEN="unterminated\n=x\nID=rocky\n'
    )
    assert parse_os_release(text) == {"PRETTY_NAME": "Rocky Linux 9.3 (Blue Onyx)", "ID": "rocky"}


@given(st.text())
def test_parse_never_raises(text: str) -> None:
    assert isinstance(parse_os_release(text), dict)


_KEYS = st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True)
_VALUES = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30).filter(
    lambda v: v == " ".join(v.split())
)


@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_quoted_values_round_trip(fields: dict[str, str]) -> None:
    text = "\n".join(f"{key}={shlex.quote(value)}" for key, value in fields.items())
    assert parse_os_release(text) == fields


@given(st.sampled_from(["x86_64", "amd64", "X86_64", "aarch64", "arm64", "ppc64le", "riscv64"]))
def test_arch_names_never_contain_the_separator(machine: str) -> None:
    arch = normalise_arch(machine)
    assert "-" not in arch and arch == arch.lower()


@given(st.dictionaries(st.sampled_from(["ID", "ID_LIKE", "VERSION_ID"]), st.text(max_size=20)))
def test_os_tag_is_always_a_single_lowercase_word(fields: dict[str, str]) -> None:
    assert re.fullmatch(r"[a-z0-9]+", os_tag(fields))

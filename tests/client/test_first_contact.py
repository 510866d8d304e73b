"""A new user's mistakes, every command: one clear line and a documented exit code, never a
traceback. Bad paths, unreadable files, bad URLs, bad encodings, no coordinator at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from client.cli import EXIT_INTERNAL, add_connection_options, app
from tests.conftest import REPO_ROOT, RunningCoordinator

DOCUMENTED = {1, 2, 3, 4}
"""docs/cli.md: refused, usage, unreachable, not authorised."""
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there
UNREADABLE = "/proc/self/mem"  # root can open it, reading it from 0 fails (EIO)


def gridpilot(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("first-contact")
    (root / "latin1.jdl").write_bytes(b'Executable = "/bin/echo";\nArguments = "caf\xe9";\n')
    (root / "bom.jdl").write_bytes(b'\xef\xbb\xbfExecutable = "/bin/true";\n')
    (root / "broken.json").write_text('{\n  "Executable": "/bin/true",\n}\n')
    (root / "empty.jdl").write_text("[]\n")
    (root / "no-exe.jdl").write_text('JobName = "x";\n')
    (root / "good.jdl").write_text('Executable = "/bin/true";\n')
    (root / "missing-isb.jdl").write_text('Executable = "x"; InputSandbox = {"nope/*.txt"};\n')
    (root / "token").write_text("not-a-token\n")
    (root / "adir").mkdir()
    return root


@pytest.fixture(scope="module")
def env(place: Path) -> Iterator[dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
    yield {**base, "GRIDPILOT_SESSION_FILE": str(place / "no-session.json")}


# (arguments, exit code, words the one line must contain). Run with GRIDPILOT_URL at a port
# where nothing listens and a token file, unless the arguments say otherwise.
CASES: list[tuple[tuple[str, ...], int, str]] = [
    # bad paths and files
    (("status", "1", "--token-file", "/nonexistent"), 2, "/nonexistent: no such file"),
    (("status", "1", "--token-file", "adir"), 2, "is a directory"),
    (("status", "1", "--token-file", UNREADABLE), 2, "/proc/self/mem"),
    (("submit", "nope.jdl"), 2, "nope.jdl: no such file"),
    (("submit", "adir"), 2, "is a directory"),
    (("submit", UNREADABLE), 2, "cannot read it"),
    (("submit", "latin1.jdl"), 2, "line 2, column 17: not UTF-8"),
    (("submit", "broken.json"), 2, "line 3, column 1: invalid JSON"),
    (("submit", "empty.jdl"), 2, "empty job description"),
    (("submit", "good.jdl", "no-exe.jdl"), 2, "no-exe.jdl: Executable is required"),
    (("submit", "missing-isb.jdl"), 2, "matches no file"),
    (("jdl", "latin1.jdl"), 2, "not UTF-8"),
    (("jdl", "empty.jdl"), 2, "empty job description"),
    (("jdl", "nope.jdl"), 2, "no such file"),
    (("jdl", "adir"), 2, "is a directory"),
    (("status", "-f", "nope.txt"), 2, "nope.txt: no such file"),
    (("status", "-f", "latin1.jdl"), 2, "not UTF-8"),
    (("status", "x1"), 2, "'x1' is not a job id"),
    (("status",), 2, "no jobs named"),
    (("get-output", "1", "--dir", "/etc/passwd"), 2, "/etc/passwd: it is not a directory"),
    (("login", "--credential-file", "/nonexistent"), 2, "no login credential"),
    (("--ca-bundle", "/nonexistent", "status", "1"), 2, "--ca-bundle /nonexistent: no such file"),
    (("status", "1", "--ca-bundle", "/nonexistent"), 2, "--ca-bundle /nonexistent: no such file"),
    (("serve", "--data-dir", "/proc/x"), 2, "cannot use /proc/x as the data dir"),
    (("serve", "--data-dir", "/etc/passwd"), 2, "not a directory"),
    (("db", "upgrade", "--database-url", "mysql://x/y"), 2, "unsupported database URL"),
    (("db", "revision", "--data-dir", "/proc/x"), 2, "no data dir /proc/x"),
    (
        ("token", "create", "--data-dir", "/proc/x", "--subject", "a", "--vo", "v"),
        2,
        "no coordinator",
    ),
    (
        ("token", "create", "--data-dir", "/proc/x", "--init", "--subject", "a", "--vo", "v"),
        2,
        "cannot use /proc/x",
    ),
    (("certs", "dev", "--out", "/proc/x"), 2, "cannot write into /proc/x"),
    (
        ("pilot", "--workdir", "/etc/passwd", "--url", NOWHERE, "--token-file", "token"),
        2,
        "work dir",
    ),
    (
        ("pilot", "--workdir", "/proc/nope/x", "--url", NOWHERE, "--token-file", "token"),
        2,
        "work dir",
    ),
    (("pilot", "--workdir", "w", "--url", "127.0.0.1:8080", "--token-file", "token"), 2, "http://"),
    (("pilot", "--workdir", "w", "--url", "ftp://x", "--token-file", "token"), 2, "http://"),
    (("pilot", "--workdir", "w", "--url", NOWHERE, "--token-file", "/nonexistent"), 2, "token"),
    # bad URLs
    (("status", "1", "--url", "127.0.0.1:8080"), 2, "must start with http://"),
    (("--url", "ftp://x", "status", "1"), 2, "must start with http://"),
    (("status", "1", "--url", "http://"), 2, "names no host"),
    (("status", "1", "--url", "http://x:99999"), 2, "port"),
    (("status", "1", "--url", "http://no-such-host.invalid"), 3, "unknown host name"),
    # no coordinator: every command that needs one
    (("status", "1"), 3, f"cannot reach the coordinator at {NOWHERE}: connection refused"),
    (("submit", "good.jdl"), 3, "connection refused"),
    (("submit", "bom.jdl"), 3, "connection refused"),  # a byte-order mark is fine
    (("logging-info", "1"), 3, "connection refused"),
    (("get-output", "1"), 3, "connection refused"),
    (("kill", "1"), 3, "connection refused"),
    (("delete", "1"), 3, "connection refused"),
    (("reschedule", "1"), 3, "connection refused"),
    (("get-jdl", "1"), 3, "connection refused"),
    (("parameters", "1"), 3, "connection refused"),
    (("attributes", "1"), 3, "connection refused"),
    (("jobs",), 3, "connection refused"),
    (("logs", "1"), 3, "connection refused"),
    (("peek", "1"), 3, "connection refused"),
    (("pilots",), 3, "connection refused"),
    (("explain", "1"), 3, "connection refused"),
    (("explain", "x1"), 2, "'x1' is not a job id"),
    (("pilots", "--why", "abc"), 3, "connection refused"),
    (("status", "--full", "1"), 3, "connection refused"),
    (("pilot-logs", "abc"), 3, "connection refused"),
    (("status", "-g", "grp"), 3, "connection refused"),
    (("whoami",), 3, "connection refused"),
    (("token", "revoke", "abc"), 3, "connection refused"),
    (("token", "revoked"), 3, "connection refused"),
    (("logout",), 0, "No login session"),
]
NO_TOKEN = [(("status", "1"), 4, "no token: log in")]


def _check(result: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode != EXIT_INTERNAL, output
    assert result.returncode == code, output
    assert words in output, output
    if code in DOCUMENTED:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("gridpilot"), output


@pytest.mark.parametrize(("args", "code", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_mistake_is_one_line_and_a_documented_exit_code(
    place: Path, env: dict[str, str], args: tuple[str, ...], code: int, words: str
) -> None:
    run_env = {**env, "GRIDPILOT_URL": NOWHERE, "GRIDPILOT_TOKEN_FILE": str(place / "token")}
    started = time.monotonic()
    result = gridpilot(*args, cwd=place, env=run_env)
    _check(result, code, words)
    if code == 3:  # a user command fails fast: a couple of seconds, not a pilot's patience
        assert time.monotonic() - started < 8, "took too long to give up"


@pytest.mark.parametrize(("args", "code", "words"), NO_TOKEN)
def test_no_token_says_how_to_get_one(
    place: Path, env: dict[str, str], args: tuple[str, ...], code: int, words: str
) -> None:
    _check(gridpilot(*args, cwd=place, env={**env, "GRIDPILOT_URL": NOWHERE}), code, words)


def test_every_command_is_driven_by_a_case() -> None:
    root = add_connection_options(typer.main.get_command(app))
    names: set[tuple[str, ...]] = set()
    for name in root.list_commands(None):  # type: ignore[arg-type]
        subs = getattr(root.get_command(None, name), "commands", None)  # type: ignore[arg-type]
        names.update((name, sub) for sub in subs) if subs else names.add((name,))
    driven = [set(args) for args, _, _ in CASES]
    missing = [
        " ".join(name)
        for name in names
        if name not in {("demo",), ("checks", "run"), ("checks", "list")}
        and not any(set(name) <= words for words in driven)
    ]
    assert not missing, f"commands no case drives: {sorted(missing)}"


def test_a_refused_token_is_said_in_words(coordinator: RunningCoordinator, place: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
    env.update(GRIDPILOT_URL=coordinator.url, GRIDPILOT_TOKEN="not-a-token")
    result = gridpilot("status", "1", cwd=place, env=env)
    _check(result, 4, "the coordinator refused the token: malformed token")
    assert "HTTP" not in result.stderr and "401" not in result.stderr


def test_the_server_and_pilot_commands_still_work_from_python_m(place: Path) -> None:
    """``python -m coordinator`` keeps the server's commands (services and scripts use it)."""
    result = subprocess.run(
        [sys.executable, "-m", "coordinator", "token", "create", "--data-dir", "nope",
         "--subject", "a", "--vo", "v"],
        cwd=place, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    _check(result, 2, "holds no coordinator")
    assert (REPO_ROOT / "coordinator" / "__main__.py").is_file()

"""``gridpilot pilot ...`` and ``gridpilot checks ...``: the only place that exits.

Exit codes (also in docs/pilot.md):

====  =====================================================
0     normal end (idle timeout, no time left)
2     bad configuration or usage
10    a fatal node check failed: the pilot took no work
11    the coordinator could not be reached after retrying
12    the coordinator refused this pilot as too old (HTTP 426)
13    black-hole stop: too many jobs failed fast in a row
14    stopped by a signal
15    the coordinator refused the pilot (bad token, forbidden)
====  =====================================================
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from pilot.config import PilotConfig, environ, load_config, token_file_path
from pilot.errors import (
    BlackHoleStop,
    ConfigError,
    CoordinatorRejected,
    CoordinatorUnreachable,
    FatalCheckFailed,
    PilotError,
    PilotOutdated,
)
from protocol import __version__

if TYPE_CHECKING:
    # Imported where used: `checks run` and `--version` then start without requests and the
    # wrapper, about 0.2 s less (docs/benchmarks.md "Pilot start-up").
    from pilot.agent import Agent
    from pilot.client import CoordinatorClient

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_FATAL_CHECK = 10
EXIT_UNREACHABLE = 11
EXIT_OUTDATED = 12
EXIT_BLACK_HOLE = 13
EXIT_SIGNAL = 14
EXIT_REJECTED = 15
PILOT_LOG_NAME = "pilot.log"
LOG_UPLOAD_RETRY_S = 10.0

logger = logging.getLogger("pilot")


def setup_logging(level: str, logfile: Optional[Path] = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        from pilot.hardening import open_private

        open_private(logfile)  # job uids may pass through the work dir, not read the log
        handlers.append(logging.FileHandler(logfile, encoding="utf-8"))
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def pilot_command(
    url: Optional[str] = typer.Option(None, help="Coordinator URL [env GRIDPILOT_URL]"),
    token_file: Optional[Path] = typer.Option(
        None, help="File holding the pilot token [env GRIDPILOT_TOKEN_FILE, or GRIDPILOT_TOKEN]"
    ),
    workdir: Optional[Path] = typer.Option(None, help="Pilot work dir [env GRIDPILOT_WORKDIR]"),
    config: Optional[Path] = typer.Option(None, help="Pilot YAML config file"),
    site: Optional[str] = typer.Option(None, help="Site name this pilot reports"),
    ce: Optional[str] = typer.Option(None, help="Computing element name"),
    idle_timeout_s: Optional[float] = typer.Option(
        None, help="Exit after this long without work [default 60]"
    ),
    poll_interval_s: Optional[float] = typer.Option(
        None, help="Longest wait between match requests [default 10]"
    ),
    cores: Optional[int] = typer.Option(None, help="Cores to fill [default: measured]"),
    time_left_s: Optional[int] = typer.Option(
        None, help="Wall time left in the slot [default: from the batch system]"
    ),
    min_time_left_s: Optional[float] = typer.Option(
        None, help="Ask for no more jobs when less time is left [default 300]"
    ),
    drain_grace_s: Optional[float] = typer.Option(
        None, help="After SIGTERM, running jobs get this long before being killed [default 20]"
    ),
    ca_bundle: Optional[str] = typer.Option(
        None, help="CA certificates (PEM) to verify an https coordinator [env GRIDPILOT_CA_BUNDLE]"
    ),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run a pilot: check the node, register, run jobs until idle."""
    cli_values: dict[str, Any] = {
        "url": url,
        "token_file": token_file,
        "workdir": workdir,
        "site": site,
        "ce": ce,
        "idle_timeout_s": idle_timeout_s,
        "poll_interval_s": poll_interval_s,
        "cores": cores,
        "time_left_s": time_left_s,
        "min_time_left_s": min_time_left_s,
        "drain_grace_s": drain_grace_s,
        "ca_bundle": ca_bundle,
    }
    env = environ()
    try:
        pilot_config = load_config(cli_values, env, config)
    except ConfigError as exc:
        typer.echo(f"gridpilot pilot: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    from pilot.hardening import harden, prepare_workdir

    try:
        prepare_workdir(pilot_config)
        setup_logging(log_level, pilot_config.workdir / PILOT_LOG_NAME)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        typer.echo(
            f"gridpilot pilot: cannot use work dir {pilot_config.workdir}: {reason}", err=True
        )
        raise typer.Exit(EXIT_CONFIG) from exc
    except ValueError as exc:  # an unknown --log-level
        typer.echo(f"gridpilot pilot: --log-level: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from exc
    harden(pilot_config, token_file_path(cli_values, env), os.environ)
    raise typer.Exit(run_pilot(pilot_config, env))


def run_pilot(config: PilotConfig, env: Mapping[str, str]) -> int:
    from pilot.agent import Agent
    from pilot.client import CoordinatorClient, RetryPolicy

    client = CoordinatorClient(
        config.url,
        config.token,
        verify=config.tls_verify,
        timeout_s=config.request_timeout_s,
        retry=RetryPolicy(max_retry_s=config.max_retry_s),
    )
    agent = Agent(config, client, env=env)
    agent.signals.install()
    try:
        code = _run_agent(agent)
    finally:
        agent.close()
        if config.upload_log:
            upload_pilot_log(client, agent.pilot_id, config.workdir / PILOT_LOG_NAME)
        client.close()
    return code


def _run_agent(agent: Agent) -> int:
    from pilot.agent import PilotExit

    try:
        result = agent.run()
    except FatalCheckFailed as exc:
        logger.error("fatal check failed, taking no work: %s", exc)
        return EXIT_FATAL_CHECK
    except BlackHoleStop as exc:
        logger.error("black-hole stop: %s", exc)
        return EXIT_BLACK_HOLE
    except CoordinatorUnreachable as exc:
        logger.error("coordinator unreachable: %s", exc)
        return EXIT_UNREACHABLE
    except PilotOutdated as exc:
        logger.error("pilot too old for this coordinator: %s", exc)
        return EXIT_OUTDATED
    except CoordinatorRejected as exc:
        logger.error("coordinator refused the pilot: %s", exc)
        return EXIT_REJECTED
    logger.info(
        "pilot %s finished (%s) after %d job(s)", agent.pilot_id, result.value, agent.jobs_done
    )
    return EXIT_SIGNAL if result is PilotExit.STOPPED else EXIT_OK


def upload_pilot_log(client: CoordinatorClient, pilot_id: str, path: Path) -> None:
    """Send ``pilot.log`` to the coordinator at exit; a failure is logged, never fatal."""
    from pilot.client import RetryPolicy

    if not pilot_id or not path.is_file():
        return
    try:
        stored = client.upload_pilot_log(
            pilot_id, path, retry=RetryPolicy(max_retry_s=LOG_UPLOAD_RETRY_S)
        )
    except PilotError as exc:
        logger.warning("pilot log not uploaded: %s", exc)
        return
    logger.info("pilot log uploaded (%d bytes)", stored)


checks_app = typer.Typer(help="Run the node checks (a site's node test; no coordinator needed).")


@checks_app.command("run")
def checks_run(
    config: Optional[Path] = typer.Option(None, help="Pilot YAML config (its checks: section)"),
    workdir: Path = typer.Option(Path("."), help="Directory whose disk is checked"),
    output_format: str = typer.Option("table", "--format", help="table, json or nagios"),
    only: Optional[list[str]] = typer.Option(None, help="Run only this check (repeatable)"),
    url: Optional[str] = typer.Option(
        None, help="Coordinator URL for the coordinator and clock checks [env GRIDPILOT_URL]"
    ),
    ca_bundle: Optional[str] = typer.Option(
        None, help="CA certificates (PEM) to verify an https coordinator [env GRIDPILOT_CA_BUNDLE]"
    ),
    log_level: str = typer.Option("WARNING", help="DEBUG, INFO, WARNING, ERROR"),
) -> None:
    """Run the checks and exit with the Nagios code (0 ok, 1 warn, 2 fail, 3 unknown)."""
    from checks.builtin.health_probe import coordinator_facts
    from checks.commands import run

    setup_logging(log_level)
    env = environ()
    outcome = run(
        config,
        output_format=output_format,
        only=only or [],
        workdir=workdir,
        node_facts=coordinator_facts(
            url or env.get("GRIDPILOT_URL", ""), ca_bundle or env.get("GRIDPILOT_CA_BUNDLE"), True
        ),
    )
    typer.echo(outcome.text, err=outcome.usage_error)
    raise typer.Exit(outcome.exit_code)


@checks_app.command("list")
def checks_list(
    config: Optional[Path] = typer.Option(None, help="Pilot YAML config (its checks: section)"),
) -> None:
    """List every check the pilot would run: fatal, timeout, interval and where it comes from."""
    from checks.commands import list_checks

    setup_logging("WARNING")
    outcome = list_checks(config)
    typer.echo(outcome.text, err=outcome.usage_error)
    raise typer.Exit(outcome.exit_code)


def add_worker_commands(app: typer.Typer) -> None:
    """Attach the worker-side commands to a Typer app (the full CLI or the pilot-only one)."""
    app.command("pilot")(pilot_command)
    app.add_typer(checks_app, name="checks")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gridpilot-pilot {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The pilot-only CLI: what the single-file pilot runs."""
    app = typer.Typer(help="gridpilot pilot (worker side)", no_args_is_help=True)

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True),
    ) -> None:
        """gridpilot worker-side commands."""

    add_worker_commands(app)
    return app


def main() -> None:
    build_app()()

"""Try the alert path: ``python -m hip3_trio alerts test [--config FILE] [--env ENV]``.

Sends one alert of kind ``test`` to the webhook the engine would use (``HIP3_ALERT_WEBHOOK``, else the
config's ``[alerts] webhook_url``), with the configured timeout and retries, exactly as the engine
sends its alerts (`hip3_trio.webhook.send_alert`). The whole config file is checked as for any run
(every value, not what only trading on testnet or mainnet needs); `--env` (default sim) is only the
label the alert carries.

Exit status, with one line on the outcome:
    0    the webhook answered 2xx
    2    configuration: no webhook configured, or the config file, the variable or the command line
         is invalid
    3    environment: the webhook could not be reached or did not answer 2xx (after the retries)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import trio

from hip3_trio.alerts import WEBHOOK_ENV_VAR, redact_url
from hip3_trio.config import ENVS, ConfigError, load_config, resolve_alerts
from hip3_trio.ops.options import run_command
from hip3_trio.webhook import send_test_alert

__all__ = ["build_parser", "main"]

PROG: Final = "python -m hip3_trio alerts"
EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2  # = cli.EXIT_CONFIG
EXIT_ENVIRONMENT: Final = 3  # = cli.EXIT_ENVIRONMENT


def build_parser() -> argparse.ArgumentParser:
    """The ``alerts`` subcommand's arguments."""
    parser = argparse.ArgumentParser(prog=PROG, description="Alerts (see docs/operations.md).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{test}")
    test = commands.add_parser(
        "test",
        help="send one test alert (exit 0 delivered, 2 not configured, 3 not delivered)",
        description="Send one test alert to the configured webhook, with the configured retries.",
    )
    test.add_argument("--config", type=Path, default=None, help="TOML config file")
    test.add_argument("--env", choices=ENVS, default="sim", help="the env the alert is labelled with")
    return parser


def main(argv: Sequence[str], *, out: Callable[[str], None] = print) -> int:
    """Run ``python -m hip3_trio alerts`` with `argv` (the arguments after ``alerts``); the exit code."""
    return run_command(build_parser(), argv, lambda args: _alerts(args, out))


def _alerts(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``alerts`` on its parsed arguments."""
    try:
        config = resolve_alerts(load_config(args.config, "sim"))  # env: only the alert's label
    except ConfigError as exc:
        out(f"hip3-trio: {exc}")
        return EXIT_CONFIG
    if config.webhook_url is None:
        out(f"hip3-trio: no webhook configured: set {WEBHOOK_ENV_VAR} or [alerts] webhook_url in the config")
        return EXIT_CONFIG
    target = redact_url(config.webhook_url)
    result = trio.run(lambda: send_test_alert(config, env=args.env))
    if result.ok:
        out(f"test alert delivered to {target} (attempt {result.attempts})")
        return EXIT_OK
    attempts = f"after {result.attempts} attempt(s)"
    out(f"hip3-trio: test alert NOT delivered to {target}: {result.error} ({attempts})")
    return EXIT_ENVIRONMENT

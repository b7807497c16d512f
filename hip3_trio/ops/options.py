"""What the operator commands share: where the state directory is, the venue options of ``check`` and
``probe`` (`add_venue_options`), and parsing (`run_command`: ``--help`` and usage errors return a status).

``report``, ``hardstop`` and ``check`` find the state directory (journal, hard-stop latch, nonce mark)
exactly as the engine does (`hip3_trio.config.state_dir_for`): ``--state-dir``, else the ``--config``
file's ``paths.state_dir``, else ``$HIP3_STATE_DIR``, else ``./hip3-state``. Without ``--config`` a
state directory set only in the config file would be missed, and the command would read another
journal without saying so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from hip3_trio.config import ENVS, Config, load_config, state_dir_for

__all__ = [
    "EXIT_USAGE",
    "add_state_dir_options",
    "add_venue_options",
    "config_of",
    "run_command",
    "state_dir_of",
]

EXIT_USAGE = 2
"""The exit status of a usage error (= ``cli.EXIT_CONFIG``): argparse has already printed it."""


def add_state_dir_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--state-dir DIR`` and ``--config FILE`` to `parser`."""
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        default=None,
        help="state directory (default: the --config file's paths.state_dir, else $HIP3_STATE_DIR, "
        "else ./hip3-state)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        default=None,
        help="the engine's TOML config: its paths.state_dir is the state directory unless --state-dir "
        "is given",
    )


def add_venue_options(parser: argparse.ArgumentParser, *, env: str, state_dir_help: str) -> None:
    """Add the options of a command that reaches the venue as the engine would (``check``, ``probe``):
    ``--env`` (default `env`), ``--config``, ``--state-dir``, ``--ws-url`` and the simulator's ``--seed``."""
    parser.add_argument("--env", choices=ENVS, default=env)
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    parser.add_argument("--state-dir", type=Path, default=None, help=state_dir_help)
    parser.add_argument("--ws-url", default=None, help="override the WebSocket endpoint")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (--env sim)")


def state_dir_of(args: argparse.Namespace) -> Path:
    """The state directory named by parsed `args` (see the module docstring); raises `ConfigError`."""
    return state_dir_for(args.state_dir, args.config)


def config_of(args: argparse.Namespace) -> Config:
    """The ``--config`` file as the engine reads it (defaults without one); raises `ConfigError`."""
    return Config() if args.config is None else load_config(args.config, "sim")


def run_command(
    parser: argparse.ArgumentParser, argv: Sequence[str], command: Callable[[argparse.Namespace], int]
) -> int:
    """`command` run on `argv` parsed by `parser`: its exit status. After ``--help`` (0) or a usage error
    (`EXIT_USAGE`), which argparse has printed, that status instead: argparse exits, a command returns."""
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    return command(args)

"""Errors shared across the engine's layers, and the exit statuses of a start-up refusal.

A start-up failure is one line on stderr, ``hip3-trio: <cause>; <fix>``, and an exit status that tells a
supervisor what kind of failure it is (the runit ``finish`` script waits before a restart on both, since
neither fixes itself):

    2  `EXIT_CONFIG`: the configuration or the command line (`config.ConfigError`, a key or nonce file,
       `StartupError`: the venue makes the configured run impossible)
    3  `EXIT_ENVIRONMENT`: the machine (`EnvironmentProblem`: a port in use, a state directory that is
       not writable; `journal.JournalError`: a journal that is damaged or cannot be used)

Anything else that ends the engine is a bug and ends it with a traceback (Python's status 1).
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_CONFIG", "EXIT_ENVIRONMENT", "EnvironmentProblem", "StartupError"]

EXIT_CONFIG: Final = 2
EXIT_ENVIRONMENT: Final = 3


class StartupError(ValueError):
    """The venue's answers make the configured run impossible (an unknown or delisted market, a
    leverage the venue will not set, a dex without the collateral for the caps, a collateral token
    other than USDC): the engine stops with a one-line error (exit status 2) instead of reconnecting."""


class EnvironmentProblem(Exception):
    """The machine keeps the engine from starting (exit 3). The message is one line naming the cause and
    the fix, e.g. ``--metrics-port 9107: 127.0.0.1:9107 is in use; stop what listens there or choose
    another port``."""

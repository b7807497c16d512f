"""Command line.

    python -m hip3_trio [--env {sim,testnet,mainnet}] [--config FILE] [--state-dir DIR] [--duration S]
                        [--dry-run] [--ws-url URL] [--log-format {text,json}] [--record DIR]
    python -m hip3_trio hardstop {status,trip,clear} ...
    python -m hip3_trio report ...
    python -m hip3_trio alerts test [--config FILE] [--env ENV]
    python -m hip3_trio check [--env ENV] [--config FILE] [--state-dir DIR]     (preflight)
    python -m hip3_trio probe --env testnet --config FILE [--yes-mainnet]  (far IOC, orderStatus, noop)

`--env sim` (the default, the safe choice) starts the built-in simulator in-process on 127.0.0.1 and
needs no key and no config: it trades the simulator's funded account with its throwaway key.
`--env testnet|mainnet` needs a config file with the account address and markets, and the key from
`HIP3_PRIVATE_KEY` or the config's `key_file` (mode 0600); mainnet also needs `allow_mainnet = true`.
`--dry-run` runs everything but never sends an order (signals are journaled as not acted on); it needs no
key and no `allow_mainnet`, so ``--env mainnet --dry-run --record DIR`` observes mainnet at no risk.
`--env sim --replay DIR [--replay-speed X]` trades a recording served by the simulator instead of its
random walk (`hip3_trio.sim.replay`); the run stops in order when the recording ends.
`--record DIR` writes every market-data frame received (bbo, activeAssetCtx and l2Book, which recording
subscribes too) and the sync's perpDexs/meta/userFees answers to DIR, one compressed file per UTC day
(`hip3_trio.recording`); ``python -m hip3_trio.sim --replay DIR`` serves it back as a venue.

Exit status (a start-up refusal prints one line, ``hip3-trio: <cause>; <fix>``, on stderr, never a
traceback; see `hip3_trio.errors`):
    0    orderly stop (duration reached, SIGTERM, SIGINT)
    2    configuration error: bad flags (e.g. ``--duration nan``, ``--market FOO``), the config file, the
         key or nonce file; or the venue makes the configured run impossible at a sync (`StartupError`: a
         market it does not list or has delisted, a leverage it refuses, a dex short of collateral for
         the caps, a collateral other than USDC, asset ids that changed), a preflight FAIL on a configured
         market or the key
    3    environment problem: the metrics port is in use, the state directory is not writable, the
         journal is damaged or cannot be used, the --record directory cannot be written, any other
         preflight FAIL before the first READY
    130  interrupted before the orderly stop could run
A programming error ends with a traceback and Python's status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NoReturn

import attrs
import trio
from trio_websocket import HandshakeError

from hip3_trio.app import engine_settings, run_engine, websocket_connector
from hip3_trio.atomic import unwritable_dir
from hip3_trio.config import Config, ConfigError, MarketConfig, load_config, resolve_alerts, resolve_state_dir
from hip3_trio.engine import Engine
from hip3_trio.errors import EXIT_CONFIG, EXIT_ENVIRONMENT, EnvironmentProblem, StartupError
from hip3_trio.execution.nonce import (
    NONCE_FILENAME,
    NonceManager,
    NonceStateError,
    load_high_water,
    save_high_water,
    wall_clock_ms,
)
from hip3_trio.journal import Journal, JournalError, JournalSink
from hip3_trio.ops.check import PreflightFailed
from hip3_trio.ops.hardstop_cmd import last_cleared
from hip3_trio.position.history import read_entry_hints
from hip3_trio.recording.recorder import Recorder, prepare_record_dir
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.history import read_risk_history
from hip3_trio.risk.monitor import RiskMonitor
from hip3_trio.sim.options import add_realism_arguments, realism_from_args
from hip3_trio.state_lock import hold_state_dir
from hip3_trio.venue.queries import UnknownMarketError
from hip3_trio.webhook import open_alerts
from hip3_trio.wire.keys import KeyConfigError
from hip3_trio.wire.signing import Signer

URLS = {
    "testnet": "wss://api.hyperliquid-testnet.xyz/ws",
    "mainnet": "wss://api.hyperliquid.xyz/ws",
}
SUBCOMMANDS = ("hardstop", "report", "alerts", "check", "probe", "backtest")

log = logging.getLogger("hip3_trio")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (for svlogd and log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"t": round(record.created, 3), "level": record.levelname, "logger": record.name}
        doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, like every other start-up refusal (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"hip3-trio: {message} (see python -m hip3_trio --help)\n")


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (``nan``, ``inf``, zero and negatives are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (0-65535), got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m hip3_trio",
        description="Run the engine (subcommands: hardstop, report, alerts — see "
        "`python -m hip3_trio report -h`).",
    )
    parser.add_argument("--env", choices=("sim", "testnet", "mainnet"), default="sim")
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="journal, hard-stop latch, nonce mark (default: "
        "paths.state_dir, else $HIP3_STATE_DIR, else ./hip3-state)",
    )
    parser.add_argument("--duration", type=_seconds, default=None, help="stop after this many seconds")
    parser.add_argument("--dry-run", action="store_true", help="never send an order")
    parser.add_argument("--ws-url", default=None, help="override the WebSocket endpoint (any env)")
    parser.add_argument("--market", action="append", default=None, help="a market to trade (repeatable)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (--env sim)")
    add_realism_arguments(parser)  # --latency-ms, --block-ms, --competitors, ... (--env sim)
    parser.add_argument("--status-every", type=_seconds, default=5.0, help="seconds between status lines")
    parser.add_argument(
        "--metrics-port", type=_port, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT"
    )
    parser.add_argument(
        "--record",
        type=Path,
        default=None,
        metavar="DIR",
        help="record market data and metadata to DIR (one .rec.gz file per UTC day); with --dry-run an "
        "observation run",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="DIR",
        help="--env sim: the simulator serves this recording (a dir or one file); the run ends with it",
    )
    parser.add_argument(
        "--replay-speed", type=_seconds, default=1.0, metavar="X", help="--replay at X times recorded speed"
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def load_run_config(args: argparse.Namespace) -> Config:
    """The config for this run: the file (or defaults), with --market overriding its markets; with
    --replay, the recording is read here (`args.replay_recording`) and its markets are the default."""
    if args.replay is not None and (args.env != "sim" or args.ws_url is not None):
        raise ConfigError(["--replay: needs --env sim (the simulator serves the recording)"], "command line")
    config = load_config(args.config, args.env, dry_run=args.dry_run)
    if args.replay is not None:
        config = _replay_config(args, config)
    if args.market:
        try:
            config = attrs.evolve(config, markets=tuple(MarketConfig(coin=c) for c in args.market))
        except ValueError as exc:  # the field validators' `Invalid`
            raise ConfigError([f"--market: {exc}"], "command line") from None
    return config


def _replay_config(args: argparse.Namespace, config: Config) -> Config:
    """--replay: a recording that cannot be replayed is a `ConfigError` (exit 2). The recorded markets
    replace the simulator's defaults."""
    from hip3_trio.recording.format import RecordingError
    from hip3_trio.sim.replay import load_recording

    try:
        args.replay_recording = load_recording(args.replay)
    except (RecordingError, OSError) as exc:
        raise ConfigError([f"--replay: {exc}"], "command line") from None
    markets = args.replay_recording.markets
    if markets and args.config is None:
        config = attrs.evolve(config, markets=tuple(MarketConfig(coin=c) for c in markets))
    return config


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory if missing and prove this user can write there, before anything starts:
    the latch, the nonce mark and the journal all live there. `EnvironmentProblem` if not."""
    problem = unwritable_dir(state_dir)
    if problem is not None:
        raise EnvironmentProblem(
            f"the state directory {state_dir} {problem}; make it a directory this user can write (e.g. "
            f"install -d -o hip3 -m 0700 {state_dir}) or choose another with --state-dir"
        )


def load_nonce_mark(path: Path) -> int:
    """The persisted nonce high-water mark: a file that cannot be read is an `EnvironmentProblem`, one
    that does not parse a `NonceStateError` (exit 2, as before)."""
    try:
        return load_high_water(path)
    except OSError as exc:
        raise EnvironmentProblem(
            f"the nonce mark {path} cannot be read ({exc.strerror or exc}); make it a file this user can "
            "read and write, or move it aside (nonces then follow the clock)"
        ) from None


def restore_risk_counters(monitor: RiskMonitor, journal: Journal, state_dir: Path) -> None:
    """Continue the risk limits from earlier runs, before trading: replay into `monitor` every risk event
    journaled since the hard stop was last cleared (`hardstop_cmd.last_cleared`: the latch file, else the
    journal), or since the journal began. A limit already crossed latches the hard stop here, so a crash
    loop cannot reset the loss budget (see `risk/history.py`). The clear is stamped by the operator's
    wall clock, the records by the exchange's: they agree within the drift limit (seconds)."""
    cleared = last_cleared(state_dir)
    since_ms = None if cleared is None else cleared.cleared_at_ms
    history = read_risk_history(journal, since_ms=since_ms)
    reason = monitor.restore(history)
    log.info(
        "risk counters from %d journaled events since %s: realized PnL %s, %d losses in a row, "
        "%d flatten failures, slippage streak %d",
        len(history),
        "the journal began" if since_ms is None else f"the hard-stop clear at {since_ms}",
        monitor.realized_pnl,
        monitor.consecutive_losses,
        monitor.flatten_failures,
        monitor.slippage_streak,
    )
    if reason is not None:
        log.critical("a risk limit was already crossed before this start: %s", reason)


def restore_from_journal(engine: Engine, journal: Journal, state_dir: Path) -> None:
    """Before trading, continue from earlier runs: the risk counters (`restore_risk_counters`) and the
    entry orders that date and attribute positions still open on the venue (`read_entry_hints`)."""
    restore_risk_counters(engine.core.monitor, journal, state_dir)
    engine.core.book.remember_entries(read_entry_hints(journal))


@attrs.frozen
class _Venue:
    """Where this run trades: url, user, signer; `finished` is set when a replayed recording ends."""

    url: str
    user: str
    signer: Signer | None
    finished: trio.Event | None = None


@asynccontextmanager
async def _venue(args: argparse.Namespace, config: Config) -> AsyncIterator[_Venue]:
    """The venue for the run; for --env sim, with the in-process simulator (or replay) running."""
    if args.replay is not None:
        from hip3_trio.sim.replay import ReplayOptions, open_replay

        options = ReplayOptions.with_realism(args.replay_speed, realism_from_args(args), args.seed)
        async with open_replay(args.replay_recording, options) as (sim, replay):
            assert sim.url is not None and sim.account is not None and sim.account_key is not None
            print(f"simulator replaying {args.replay} on {sim.url}, account {sim.account}", flush=True)
            yield _Venue(sim.url, sim.account, Signer.from_key(sim.account_key), replay.finished)
        return
    if args.env == "sim" and args.ws_url is None:
        from hip3_trio.sim import SimConfig, open_simulator

        sim_config = SimConfig(seed=args.seed, realism=realism_from_args(args))
        async with open_simulator(sim_config) as sim:
            assert sim.url is not None and sim.account is not None and sim.account_key is not None
            print(f"simulator listening on {sim.url}, account {sim.account}", flush=True)
            yield _Venue(sim.url, sim.account, Signer.from_key(sim.account_key))
        return
    url = args.ws_url or config.connection.ws_url or URLS.get(args.env)
    if url is None:
        raise ConfigError(["--ws-url: --env sim with an external endpoint needs the url"], "command line")
    user = config.vault_address or config.account_address
    if user is None:
        raise ConfigError([f"account_address: required for --env {args.env}"], "command line")
    signer = None
    if not args.dry_run or config.key_file is not None:
        signer = Signer.load(key_file=config.key_file, expected_address=config.signer_address)
    yield _Venue(url, user, signer)


async def run_preflight(
    args: argparse.Namespace,
    config: Config,
    *,
    url: str,
    user: str,
    signer: Signer | None,
    state_dir: Path,
    out: Callable[[str], None],
) -> None:
    """The same checks as `python -m hip3_trio check`, once, before the engine's first READY: a FAIL
    that matters to a trading engine (`check.engine_blockers`) refuses the start (`PreflightFailed`,
    exit 3; a `StartupError`, exit 2, when a configured market or the key fails) with the table in the
    log; anything else is logged and the engine starts."""
    from hip3_trio.ops.check import PreflightFailed, engine_blockers, format_table, preflight
    from hip3_trio.ops.venue_client import open_venue_client

    try:
        async with open_venue_client(websocket_connector(url)) as venue:
            results = await preflight(
                venue,
                config=config,
                user=user,
                signer_address=signer.address if signer is not None else None,
                state_dir=state_dir,
            )
    except (OSError, HandshakeError) as exc:  # the venue is unreachable: an environment problem (exit 3)
        raise PreflightFailed(
            f"preflight: cannot reach the venue at {url}: {type(exc).__name__} {exc}"
        ) from None
    blockers = engine_blockers(results, dry_run=args.dry_run)
    for line in format_table(results):
        (log.error if blockers else log.info)("preflight: %s", line)
    if not blockers:
        return
    names = ", ".join(f"{r.name} ({r.value})" for r in blockers)
    if any(r.name == "key" or r.name.startswith("market ") for r in blockers):
        # The configuration names what the venue does not have: a configuration error (exit 2), to fix
        # first (other FAILs may follow from it: a dex that does not exist has no clearinghouse time).
        raise StartupError(
            f"preflight FAIL, not trading: {names}; fix the markets ([[markets]] or --market: 'dex:COIN' "
            "as the venue lists them) or the key and signer_address, then `python -m hip3_trio check`"
        )
    raise PreflightFailed(f"preflight FAIL, not trading: {names}; `python -m hip3_trio check` shows all")


async def amain(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    config = load_run_config(args)
    alerts_config = resolve_alerts(config)  # before anything starts: a bad HIP3_ALERT_WEBHOOK is exit 2
    state_dir = resolve_state_dir(config, args.state_dir)
    prepare_state_dir(state_dir)
    if args.record is not None:
        prepare_record_dir(args.record)  # exit 3 before anything starts
    # One process per state directory, before anything in it is read: the nonce mark and the latch
    # another engine is writing would be stale the moment it exits.
    with hold_state_dir(state_dir, f"hip3-trio --env {args.env}"):
        nonce_path = state_dir / NONCE_FILENAME
        hard_stop = HardStop.load(state_dir, wall_clock_ms())
        if hard_stop.latched:
            record = hard_stop.record
            log.critical(
                "hard stop is latched (%s): watching and flattening only; clear with "
                "`python -m hip3_trio hardstop clear --yes`",
                record.reason if record else "unreadable latch file",
            )
        nonces = NonceManager(wall_clock_ms, high_water=load_nonce_mark(nonce_path))
        # Before the venue or the simulator starts: a damaged journal refuses the start (exit 3).
        with Journal.open(state_dir) as journal:
            async with _venue(args, config) as venue:
                url, user, signer = venue.url, venue.user, venue.signer
                await run_preflight(
                    args, config, url=url, user=user, signer=signer, state_dir=state_dir, out=out
                )
                settings = engine_settings(
                    config,
                    user=user,
                    dry_run=args.dry_run,
                    is_mainnet=args.env == "mainnet",
                    cloid_prefix=wall_clock_ms(),
                )
                out(
                    f"hip3-trio: env={args.env} markets={','.join(settings.markets)} user={user} "
                    f"state={state_dir}{' DRY RUN' if args.dry_run else ''}"
                )
                sink, receive = JournalSink.open(clock_ms=wall_clock_ms)
                alert_sink, alert_sender = open_alerts(alerts_config, env=args.env)
                engine = Engine(
                    settings,
                    signer=signer,
                    nonces=nonces,
                    hard_stop=hard_stop,
                    journal=sink,
                    save_nonce=lambda high_water: save_high_water(nonce_path, high_water),
                    alerts=alert_sink,
                )
                restore_from_journal(engine, journal, state_dir)
                recorder = None
                if args.record is not None:
                    recorder = Recorder(args.record, env=args.env, markets=settings.markets)
                    out(f"recording market data to {args.record}")
                await run_engine(
                    engine,
                    websocket_connector(url),
                    journal=journal,
                    journal_receive=receive,
                    duration=args.duration,
                    status_every=args.status_every,
                    handle_signals=True,
                    metrics_port=args.metrics_port,
                    out=out,
                    alerts=alert_sender,
                    recorder=recorder,
                    stop=venue.finished,
                )
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:])
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    status = logging.getLogger("hip3_trio.status")
    out: Callable[[str], None] = (
        (lambda line: print(line, flush=True)) if args.log_format == "text" else status.info
    )
    try:
        return trio.run(amain, args, out)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        refused = startup_refusal(exc)
        if refused is None:
            raise  # a bug: the traceback is the report
        code, message = refused
        print(f"hip3-trio: {message}", file=sys.stderr)
        return code


def startup_refusal(exc: BaseException) -> tuple[int, str] | None:
    """(exit status, one-line message) for a start-up failure that is not a bug, else None.

    A failure raised inside the engine's task tree (a `StartupError` from the first sync: a market the
    venue does not list or has delisted, a leverage it refuses, a dex short of collateral; a preflight
    FAIL before the first READY; the metrics port) arrives wrapped in exception groups: it counts when
    every leaf is such a failure, and the first leaf's message is the one printed.
    """
    leaves = list(_leaves(exc))
    refusals = [_refusal(leaf) for leaf in leaves]
    if not refusals or any(r is None for r in refusals):
        return None
    return refusals[0]


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _refusal(exc: BaseException) -> tuple[int, str] | None:
    if isinstance(exc, ConfigError | KeyConfigError):
        return EXIT_CONFIG, str(exc)
    if isinstance(exc, NonceStateError):
        return EXIT_CONFIG, f"{exc}; repair it, or move it aside (nonces then follow the clock)"
    if isinstance(exc, UnknownMarketError):
        return EXIT_CONFIG, (
            f"{exc}; fix the markets in the config ([[markets]]) or --market: HIP-3 markets are "
            "'dex:COIN' as the venue lists them (perpDexs, meta)"
        )
    if isinstance(exc, StartupError):  # the venue makes the configured run impossible; the message says
        return EXIT_CONFIG, str(exc)
    if isinstance(exc, JournalError | EnvironmentProblem | PreflightFailed):
        return EXIT_ENVIRONMENT, str(exc)
    return None


def _subcommand(name: str, argv: list[str]) -> int:
    if name == "alerts":
        from hip3_trio.ops import alerts_cmd

        return alerts_cmd.main(argv)
    if name == "check":
        from hip3_trio.ops import check

        return check.main(argv)
    if name == "probe":
        from hip3_trio.ops import probe

        return probe.main(argv)
    if name == "hardstop":
        from hip3_trio.ops import hardstop_cmd

        return hardstop_cmd.main(argv)
    if name == "backtest":
        from hip3_trio.backtest import command

        return command.main(argv)
    from hip3_trio.ops import report

    return report.main(argv)

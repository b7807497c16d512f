"""Command line: `python -m hip3_trio --env {sim,testnet,mainnet} [--duration S] [--ws-url URL]`.

`--env sim` (the default, the safe choice) starts the built-in simulator in-process on 127.0.0.1 and
needs no key and no config. The order path is not wired yet, so every run is a dry run: the engine
connects, maps the markets, streams book and oracle through the detector and reports what it would do.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import trio

from hip3_trio.app import DryRunHost, run_engine, summary, websocket_connector
from hip3_trio.strategy.detector import DetectorConfig

URLS = {
    "testnet": "wss://api.hyperliquid-testnet.xyz/ws",
    "mainnet": "wss://api.hyperliquid.xyz/ws",
}
DEFAULT_MARKETS = ("xyz:COIN", "xyz:NVDA")


class JsonFormatter(logging.Formatter):
    """One JSON object per line (for svlogd and log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "t": record.created,
                "level": record.levelname,
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hip3_trio", description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=("sim", "testnet", "mainnet"), default="sim")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--ws-url", default=None, help="override the WebSocket endpoint")
    parser.add_argument("--market", action="append", default=None, help="a market to watch (repeatable)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (--env sim)")
    parser.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error(f"--duration must be positive, got {args.duration}")
    if args.env == "mainnet":
        parser.error(
            "mainnet needs an explicit opt-in (allow_mainnet = true in the config), "
            "which lands with the live engine"
        )
    return args


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


async def amain(args: argparse.Namespace) -> int:
    markets = tuple(args.market or DEFAULT_MARKETS)
    host = DryRunHost(wanted=markets, detector_config=DetectorConfig())
    print(
        f"hip3-trio: env={args.env} markets={','.join(markets)} — dry run (the order path is not wired yet)"
    )
    if args.env == "sim" and args.ws_url is None:
        from hip3_trio.sim import SimConfig, open_simulator

        async with open_simulator(SimConfig(seed=args.seed)) as sim:
            assert sim.url is not None, "open_simulator(listen=True) always sets the url"
            print(f"simulator listening on {sim.url}")
            connect = websocket_connector(sim.url)
            stats = await run_engine(connect, host, duration=args.duration, status_every=args.status_every)
    else:
        url = args.ws_url or URLS[args.env]
        connect = websocket_connector(url)
        stats = await run_engine(connect, host, duration=args.duration, status_every=args.status_every)
    print(summary(stats))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    try:
        return trio.run(amain, args)
    except KeyboardInterrupt:
        return 0

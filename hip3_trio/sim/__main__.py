"""``python -m hip3_trio.sim``: run the simulator on a local port until interrupted.

The first line of output is the WebSocket URL (``ws://127.0.0.1:PORT/ws``) so a script can read it.
With no ``--account``/``--agent`` a funded account is created and its address and throwaway key are
printed next. Fault flags arm the same switches as ``Faults`` in the API. The realism flags
(``--latency-ms``, ``--block-ms``, ``--competitors``, ``--competitor-median-ms``, ``--refill-s``;
``options.py``) default to the realistic models. A bad flag prints one line and exits 2.

``--replay DIR [--speed X]`` serves a recording (``python -m hip3_trio --record DIR``) instead of the
random walk: its markets, metadata and market-data frames at recorded timing / X, orders executed in
blocks after the network latency, with the impact and competition models on top (``--no-realism``: the
recording as it was). See ``sim/replay.py``. A recording that cannot be replayed is one line on stderr
and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import NoReturn

import trio

from hip3_trio.recording.format import RecordingError

from .config import SimConfig
from .faults import Faults
from .options import add_realism_arguments, realism_from_args
from .replay import Recording, ReplayOptions, load_recording, open_replay
from .server import Simulator


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = _Parser(prog="python -m hip3_trio.sim", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--network", choices=("testnet", "mainnet"), default="testnet")
    p.add_argument("--account", action="append", default=[], metavar="0xADDRESS", help="fund this user")
    p.add_argument(
        "--agent", action="append", default=[], metavar="0xAGENT:0xMASTER", help="approve an API wallet"
    )
    p.add_argument("--balance", type=Decimal, default=None, help="USDC per dex for funded accounts")
    p.add_argument("--base-epoch-ms", type=int, default=None, help="venue time at start (default: now)")
    p.add_argument("--dislocation-rate", type=float, default=None, help="probability per oracle update")
    p.add_argument("--dislocation-bps", type=float, default=None, help="typical dislocation size")
    p.add_argument("--oracle-interval", type=float, default=None, help="seconds between oracle updates")
    p.add_argument("--dislocation-updates", type=int, default=None, help="oracle updates a dislocation lasts")
    add_realism_arguments(p)
    replay = p.add_argument_group("replay a recording")
    replay.add_argument("--replay", type=Path, default=None, metavar="DIR", help="a recording dir or file")
    replay.add_argument("--speed", type=float, default=1.0, metavar="X", help="X times recorded speed")
    replay.add_argument("--no-realism", action="store_true", help="no impact, no competing takers")
    limits = p.add_argument_group("costs and limits of funded accounts")
    limits.add_argument(
        "--requests-used",
        type=int,
        default=None,
        metavar="N",
        help="actions already spent from the address budget (start near exhaustion; default 0)",
    )
    limits.add_argument(
        "--cum-volume",
        type=Decimal,
        default=None,
        metavar="USDC",
        help="volume already traded: the budget cap is 10000 + this (default 0)",
    )
    limits.add_argument(
        "--request-trickle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="once the budget is exhausted, one action per this interval gets through (default 10)",
    )
    limits.add_argument(
        "--default-leverage",
        type=int,
        default=None,
        help="leverage of an asset never set with updateLeverage (default: its maxLeverage)",
    )
    faults = p.add_argument_group("faults")
    faults.add_argument("--close-after-frames", type=int, default=None)
    faults.add_argument("--close-at-ms", type=int, default=None, help="venue epoch-ms at which to drop all")
    faults.add_argument("--close-code", type=int, default=None, help="send this close code (default: drop)")
    faults.add_argument("--reply-delay", type=float, default=0.0, help="seconds")
    faults.add_argument("--lose-posts", type=int, default=0, help="action posts never executed nor answered")
    faults.add_argument("--drop-replies", type=int, default=0)
    faults.add_argument("--duplicate-replies", type=int, default=0)
    faults.add_argument("--garbage-frames", type=int, default=0)
    faults.add_argument("--truncated-frames", type=int, default=0)
    faults.add_argument("--skip-ioc-order-updates", type=int, default=0)
    faults.add_argument("--empty-clearinghouse-once", action="store_true")
    faults.add_argument("--stall-market-data", action="store_true")
    faults.add_argument("--clock-skew-ms", type=int, default=0)
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Simulator:
    """A simulator configured from parsed arguments (accounts funded, faults armed)."""
    config = SimConfig(
        seed=args.seed,
        network=args.network,
        base_epoch_ms=args.base_epoch_ms,
        realism=realism_from_args(args),
    )
    if args.balance is not None:
        config.initial_balance = args.balance
    if args.dislocation_rate is not None:
        config.market.dislocation_rate = args.dislocation_rate
    if args.dislocation_bps is not None:
        config.market.dislocation_bps = args.dislocation_bps
    if args.oracle_interval is not None:
        config.market.oracle_interval_s = args.oracle_interval
    if args.dislocation_updates is not None:
        config.market.dislocation_updates = args.dislocation_updates
    if args.requests_used is not None:
        config.initial_requests_used = args.requests_used
    if args.cum_volume is not None:
        config.initial_cum_volume = args.cum_volume
    if args.request_trickle is not None:
        config.request_trickle_s = args.request_trickle
    if args.default_leverage is not None:
        config.default_leverage = args.default_leverage
    faults = Faults(
        close_after_frames=args.close_after_frames,
        close_at_ms=args.close_at_ms,
        close_code=args.close_code,
        reply_delay_s=args.reply_delay,
        lose_posts=args.lose_posts,
        drop_replies=args.drop_replies,
        duplicate_replies=args.duplicate_replies,
        garbage_frames=args.garbage_frames,
        truncated_frames=args.truncated_frames,
        skip_ioc_order_updates=args.skip_ioc_order_updates,
        empty_clearinghouse_once=args.empty_clearinghouse_once,
        stall_market_data=args.stall_market_data,
        clock_skew_ms=args.clock_skew_ms,
    )
    sim = Simulator.create(config, faults)
    for address in args.account:
        sim.add_account(address)
    for pair in args.agent:
        agent, _, master = pair.partition(":")
        if not master:
            raise SystemExit(f"--agent expects 0xAGENT:0xMASTER, got {pair!r}")
        sim.approve_agent(agent, master)
    return sim


async def serve(sim: Simulator, host: str, port: int, print_key: bool) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        url = await nursery.start(sim.serve_tcp, host, port)
        print(url, flush=True)
        if print_key:
            print(f"account {sim.account}", flush=True)
            print(f"key {sim.account_key}  (throwaway, simulator only)", flush=True)
        else:
            print(f"accounts {' '.join(sorted(sim.exchange.accounts.users))}", flush=True)


async def serve_replay(recording: Recording, options: ReplayOptions, host: str, port: int) -> None:
    async with open_replay(recording, options, host=host, port=port) as (sim, replay):
        print(sim.url, flush=True)
        print(f"account {sim.account}", flush=True)
        print(f"key {sim.account_key}  (throwaway, simulator only)", flush=True)
        await replay.finished.wait()
        print(f"replay finished: {replay.served} frames served", flush=True)
        await trio.sleep_forever()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay is not None:
        if not (math.isfinite(args.speed) and args.speed > 0):
            print(f"hip3_trio.sim: --speed must be a positive number, got {args.speed}", file=sys.stderr)
            return 2
        try:
            recording = load_recording(args.replay)
        except (RecordingError, OSError) as exc:
            print(f"hip3_trio.sim: --replay: {exc}", file=sys.stderr)
            return 2
        options = (
            ReplayOptions.plain(args.speed)
            if args.no_realism
            else ReplayOptions.with_realism(args.speed, realism_from_args(args), args.seed)
        )
        try:
            trio.run(serve_replay, recording, options, args.host, args.port)
        except KeyboardInterrupt:
            return 0
        return 0
    sim = build(args)
    print_key = not args.account and not args.agent
    if print_key:
        sim.create_funded_account()
    try:
        trio.run(serve, sim, args.host, args.port, print_key)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

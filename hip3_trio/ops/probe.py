"""Probe the real venue: ``python -m hip3_trio probe --env testnet --config FILE [--market COIN]``.

Proves what the simulator cannot (PROTOCOL.md open point 1): one minimal IOC buy with a cloid on a
configured HIP-3 market, priced at half the best bid so it cannot match (it must not fill), then
``orderStatus`` by that cloid, then a ``noop``. Reports whether the signature was accepted, whether a
cloid is accepted on HIP-3 orders (the reply answers the order and ``orderStatus`` finds it by cloid:
an open report in the official SDK's tracker says such orders can fail silently), what
``orderStatus`` says, and the request budget spent (``userRateLimit`` before and after).

Nonces come from the state directory's persisted mark and the mark is saved before each action is
sent, so no nonce is ever reused (do not run it while an engine uses the same state directory).
Mainnet only with ``--yes-mainnet``.

Exit status: 0 every item proven; 2 a bad config, key or command line (or mainnet without
``--yes-mainnet``); 3 the venue refused or failed something (the lines say what).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Final

import trio
from trio_websocket import HandshakeError

from hip3_trio.config import Config, ConfigError, load_config, resolve_state_dir
from hip3_trio.errors import EnvironmentProblem
from hip3_trio.execution.nonce import NonceManager, NonceStateError, load_high_water, save_high_water
from hip3_trio.ops.options import add_venue_options, run_command
from hip3_trio.ops.venue_client import VenueClient, open_venue_client, venue_endpoint
from hip3_trio.state_lock import hold_state_dir
from hip3_trio.venue.session import InfoError
from hip3_trio.wire.actions import Cloid, LimitOrderType, NoopAction, OrderAction, OrderWire, action_to_wire
from hip3_trio.wire.keys import KeyConfigError, verify_signer_address
from hip3_trio.wire.markets import MarketsError, dex_of, parse_meta, parse_perp_dexs
from hip3_trio.wire.numbers import Rounding, lot, round_price
from hip3_trio.wire.signing import Signer

__all__ = ["main", "run_probe"]

PROG: Final = "python -m hip3_trio probe"
EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
EXIT_ENVIRONMENT: Final = 3
NONCE_FILENAME: Final = "nonce.json"  # = cli.NONCE_FILENAME
#: Notional of the probe order: above the venue's $10 minimum at its (far) limit price.
PROBE_NOTIONAL: Final = Decimal(11)
#: The limit price as a fraction of the best bid: an IOC buy there cannot match.
FAR_FACTOR: Final = Decimal("0.5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Probe the venue (see docs/operations.md).")
    add_venue_options(parser, env="testnet", state_dir_help="as for the engine (nonce mark)")
    parser.add_argument("--market", default=None, help="the market to probe (default: the first configured)")
    parser.add_argument("--yes-mainnet", action="store_true", help="required for --env mainnet")
    return parser


def main(argv: Sequence[str], *, out: Callable[[str], None] = print) -> int:
    """Run ``python -m hip3_trio probe`` with `argv` (the arguments after ``probe``); the exit code."""
    return run_command(build_parser(), argv, lambda args: _probe(args, out))


def _probe(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``probe`` on its parsed arguments."""
    if args.env == "mainnet" and not args.yes_mainnet:
        out("hip3-trio: probe refuses mainnet without --yes-mainnet (it sends a real order)")
        return EXIT_CONFIG
    try:
        config = load_config(args.config, args.env)
        if args.market is not None and args.market not in config.coins:
            raise ConfigError([f"--market {args.market}: not a configured market"], "command line")
        state_dir = resolve_state_dir(config, args.state_dir)
        return trio.run(_run, args, config, state_dir, out)
    except (ConfigError, KeyConfigError, NonceStateError) as exc:
        out(f"hip3-trio: {exc}")
        return EXIT_CONFIG


async def _run(args: argparse.Namespace, config: Config, state_dir: Path, out: Callable[[str], None]) -> int:
    async with venue_endpoint(args.env, args.ws_url, args.seed, config) as endpoint:
        if endpoint.signer is None:
            raise KeyConfigError(endpoint.key_problem or "no signing key")
        verify_signer_address(endpoint.signer.address, config.signer_address)
        coin = args.market or config.coins[0]
        try:
            with hold_state_dir(state_dir, "hip3-trio probe"):
                async with open_venue_client(endpoint.connect) as venue:
                    return await run_probe(
                        venue,
                        signer=endpoint.signer,
                        user=endpoint.user,
                        coin=coin,
                        state_dir=state_dir,
                        vault_address=config.vault_address,
                        is_mainnet=args.env == "mainnet",
                        out=out,
                    )
        except EnvironmentProblem as exc:
            out(f"hip3-trio: {exc}")
            return EXIT_ENVIRONMENT
        except (OSError, HandshakeError, InfoError, MarketsError) as exc:
            out(f"hip3-trio: probe failed: {type(exc).__name__}: {exc}")
            return EXIT_ENVIRONMENT


def _short(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))[:300]


async def run_probe(
    venue: VenueClient,
    *,
    signer: Signer,
    user: str,
    coin: str,
    state_dir: Path,
    vault_address: str | None,
    is_mainnet: bool,
    out: Callable[[str], None] = print,
) -> int:
    """The probe over an open client; prints one line per item and returns the exit code."""
    user = user.lower()
    dex = dex_of(coin)
    dexes = parse_perp_dexs(await venue.info({"type": "perpDexs"}))
    if dex not in dexes:
        raise MarketsError(f"dex {dex!r} is not listed by perpDexs")
    specs = {
        s.coin: s
        for s in parse_meta(await venue.info({"type": "meta", "dex": dex}), dex=dex, dex_index=dexes[dex])
    }
    if coin not in specs:
        raise MarketsError(f"{coin} is not listed in meta({dex!r})")
    spec = specs[coin]
    book = await venue.info({"type": "l2Book", "coin": coin})
    bids = book.get("levels", [[]])[0] if isinstance(book, dict) else []
    if bids:
        reference = Decimal(str(bids[0]["px"]))
    else:
        active = await venue.info({"type": "activeAssetData", "user": user, "coin": coin})
        reference = Decimal(str(active["markPx"]))
    px = round_price(reference * FAR_FACTOR, spec.sz_decimals, Rounding.DOWN)
    sz = (PROBE_NOTIONAL / px).quantize(lot(spec.sz_decimals), rounding=ROUND_CEILING)

    state = await venue.info({"type": "clearinghouseState", "user": user, "dex": dex})
    nonce_path = state_dir / NONCE_FILENAME
    state_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (a command's one-off start-up)
    nonces = NonceManager(high_water=load_high_water(nonce_path))
    if isinstance(state.get("time"), int):
        nonces.sync_with_server(state["time"])

    def next_nonce() -> int:
        nonce = nonces.next()
        save_high_water(nonce_path, nonce)  # persisted before it is sent: never reused
        return nonce

    def payload(action: OrderAction | NoopAction, nonce: int) -> dict[str, Any]:
        wire = action_to_wire(action)
        sig = signer.sign_l1_action(wire, nonce, vault_address=vault_address, is_mainnet=is_mainnet)
        body: dict[str, Any] = {"action": wire, "nonce": nonce, "signature": sig}
        if vault_address is not None:
            body["vaultAddress"] = vault_address
        return body

    before = await venue.info({"type": "userRateLimit", "user": user})
    cloid = Cloid.from_int(nonces.approx_server_time_ms() << 32 | 0x9B0BE)
    order = OrderWire(spec.asset, True, px, sz, False, LimitOrderType("Ioc"), cloid)
    nonce = next_nonce()
    out(
        f"probe: {coin} (asset {spec.asset}) user {user} signer {signer.address}: IOC buy {sz} @ {px} "
        f"(best bid {reference}) cloid {cloid} nonce {nonce}"
    )
    reply = await venue.action(payload(OrderAction(orders=(order,)), nonce))
    ok = True
    statuses: list[Any] = []
    if isinstance(reply, dict) and reply.get("status") == "ok":
        out("signature accepted        : yes (reply status ok)")
        data = reply.get("response", {}).get("data", {}) if isinstance(reply.get("response"), dict) else {}
        statuses = data.get("statuses", []) if isinstance(data, dict) else []
    else:
        ok = False
        out(f"signature accepted        : NO: {_short(reply)}")
    first = statuses[0] if statuses else None
    filled = isinstance(first, dict) and "filled" in first
    if filled or (isinstance(first, dict) and "resting" in first):
        ok = False
        out(
            f"order outcome             : IT {'FILLED' if filled else 'RESTS'}: {_short(first)}"
            " -- check the account and close it"
        )
    elif isinstance(first, dict) and "error" in first:
        out(f"order outcome             : not filled: {first['error']}")
    else:
        out(
            f"order outcome             : {'no per-order status' if ok else 'not placed'}: {_short(statuses)}"
        )

    answer = await venue.info({"type": "orderStatus", "user": user, "oid": str(cloid)})
    found = isinstance(answer, dict) and answer.get("status") == "order"
    if found:
        inner = answer["order"]
        out(
            f"orderStatus by cloid      : found, status {inner.get('status')}, "
            f"oid {inner.get('order', {}).get('oid')}"
        )
    else:
        ok = False
        out(f"orderStatus by cloid      : NOT found: {_short(answer)}")
    if first is not None and found:
        out("cloid accepted on HIP-3   : yes (the reply answered the order and orderStatus finds its cloid)")
    elif first is not None:
        out("cloid accepted on HIP-3   : UNCLEAR (answered, but orderStatus does not know the cloid)")
    else:
        out("cloid accepted on HIP-3   : NO (no per-order answer: dropped silently or refused)")

    noop = await venue.action(payload(NoopAction(), next_nonce()))
    if isinstance(noop, dict) and noop.get("status") == "ok":
        out("noop                      : accepted")
    else:
        ok = False
        out(f"noop                      : NOT accepted: {_short(noop)}")

    after = await venue.info({"type": "userRateLimit", "user": user})
    used_before, used_after = before.get("nRequestsUsed"), after.get("nRequestsUsed")
    if isinstance(used_before, int) and isinstance(used_after, int):
        left = after.get("nRequestsCap", 0) - used_after
        out(
            f"request budget            : used {used_before} -> {used_after} "
            f"(spent {used_after - used_before}), {left} left"
        )
    else:
        out(f"request budget            : unreadable: {_short(before)} / {_short(after)}")
    out(f"nonce mark saved          : {nonces.high_water} in {nonce_path}")
    out("probe: OK" if ok else "probe: FAILED (see above)")
    return EXIT_OK if ok else EXIT_ENVIRONMENT

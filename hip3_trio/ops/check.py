"""Preflight: ``python -m hip3_trio check [--env ENV] [--config FILE] [--state-dir DIR]``.

Checks the set-up before money is at stake and prints one line per check, PASS / WARN / FAIL with the
value seen: the key and the configured ``signer_address``; that the signer is the account or an API
wallet approved for it (``userRole``) and, for a named one, not expiring within a week
(``extraAgents``); each market (listed, not delisted, max leverage, margin mode,
the account's leverage on it); each dex's balance against the caps; the effective taker fee per
market; the request budget left; the clock offset to the venue; the state directory, the journal, the
hard-stop latch and the nonce mark against the venue's time. Nothing is written except a temporary
file that proves the state directory writable; the journal is opened read-only.

`preflight` is the library form the engine can run over its session before its first READY.

Exit status: 0 no FAIL (WARNs allowed), 2 a bad config or command line, 3 a FAIL (an environment
problem) or the venue could not be reached.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import attrs
import trio
from trio_websocket import HandshakeError

from hip3_trio.config import Config, ConfigError, load_config, resolve_state_dir
from hip3_trio.execution.nonce import (
    DEFAULT_MAX_DRIFT_MS,
    DEFAULT_WARN_DRIFT_MS,
    NONCE_FILENAME,
    NonceStateError,
    load_high_water,
    wall_clock_ms,
)
from hip3_trio.fees import UserFees, taker_fee_bps
from hip3_trio.journal import JournalUnavailable, journal_path, open_journal_read_only
from hip3_trio.ops.options import add_venue_options, run_command
from hip3_trio.ops.rows import format_time_ms
from hip3_trio.risk.hard_stop import DEFAULT_FILENAME as HARD_STOP_FILENAME
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.venue.session import InfoError
from hip3_trio.wire.markets import MarketsError, asset_id, dex_of, parse_perp_dexs

__all__ = ["CheckResult", "InfoSource", "exit_status", "format_table", "main", "preflight"]

PROG: Final = "python -m hip3_trio check"
EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2  # = cli.EXIT_CONFIG
EXIT_ENVIRONMENT: Final = 3  # = cli.EXIT_ENVIRONMENT
#: The venue refuses a nonce more than a day ahead of its block time (PROTOCOL.md, Nonces).
NONCE_FUTURE_WINDOW_MS: Final = 24 * 3600 * 1000
#: Fewer actions left than this is a WARN (a day of quiet trading, a few hundred, fits well inside).
BUDGET_WARN_LEFT: Final = 1000
#: An API wallet approval with less than this left is a WARN: the plan runs a week unattended.
AGENT_WARN_LEFT_MS: Final = 7 * 24 * 3600 * 1000

Status = Literal["PASS", "WARN", "FAIL"]


@attrs.frozen
class CheckResult:
    """One line of the table: what was checked, the verdict and the value seen."""

    name: str
    status: Status
    value: str


class InfoSource(Protocol):
    """What the checks need from the venue: `Session.info` or `VenueClient.info`."""

    async def info(self, request: dict[str, Any]) -> Any: ...


class PreflightFailed(Exception):
    """The engine's own preflight (before its first READY) found a FAIL: it refuses to trade (exit 3)."""


#: Checks that do not stop the engine itself: a latched hard stop is what the engine runs to handle
#: (watching and flattening only); a dry run signs nothing, so it needs no key or approved signer.
ENGINE_IGNORES: Final = frozenset({"hard stop"})
DRY_RUN_IGNORES: Final = frozenset({"key", "signer approved"})


def engine_blockers(results: Sequence[CheckResult], *, dry_run: bool) -> list[CheckResult]:
    """The FAILs that stop the engine from trading (see `ENGINE_IGNORES`, `DRY_RUN_IGNORES`)."""
    ignored = ENGINE_IGNORES | (DRY_RUN_IGNORES if dry_run else frozenset())
    return [r for r in results if r.status == "FAIL" and r.name not in ignored]


def exit_status(results: Sequence[CheckResult]) -> int:
    """0 with no FAIL, else 3 (an environment problem)."""
    return EXIT_ENVIRONMENT if any(r.status == "FAIL" for r in results) else EXIT_OK


def format_table(results: Sequence[CheckResult]) -> list[str]:
    """One line per check: ``STATUS  name  value``, names aligned."""
    width = max((len(r.name) for r in results), default=0)
    return [f"{r.status:<4}  {r.name:<{width}}  {r.value}" for r in results]


# --- local checks -----------------------------------------------------------------------------------


def check_key(config: Config, signer_address: str | None, key_problem: str | None = None) -> CheckResult:
    """The key is loaded and its address is the configured `signer_address` (when one is configured)."""
    if signer_address is None:
        return CheckResult("key", "FAIL", key_problem or "no signing key loaded")
    configured = config.signer_address
    if configured is None:
        return CheckResult("key", "PASS", f"{signer_address} (no signer_address configured to compare)")
    if configured.lower() != signer_address.lower():
        return CheckResult("key", "FAIL", f"key is {signer_address}, signer_address is {configured}")
    return CheckResult("key", "PASS", f"{signer_address} = signer_address")


def check_state_dir(state_dir: Path) -> CheckResult:
    """The state directory exists (or can be created) and a file can be written in it."""
    name = "state dir writable"
    if not state_dir.exists():
        parent = next((p for p in state_dir.parents if p.exists()), Path("/"))
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return CheckResult(name, "PASS", f"{state_dir} (absent; the engine creates it)")
        return CheckResult(name, "FAIL", f"{state_dir} is absent and {parent} is not writable")
    if not state_dir.is_dir():
        return CheckResult(name, "FAIL", f"{state_dir} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".preflight-"):
            pass
    except OSError as exc:
        return CheckResult(name, "FAIL", f"{state_dir}: {exc.strerror or exc}")
    return CheckResult(name, "PASS", str(state_dir))


def check_journal(state_dir: Path) -> CheckResult:
    """The journal, opened read-only, passes ``PRAGMA quick_check`` (as `Journal.open` requires)."""
    path = journal_path(state_dir)
    if not path.exists():
        return CheckResult("journal", "PASS", f"none yet at {path} (created on the first run)")
    try:
        conn = open_journal_read_only(path)
    except JournalUnavailable as exc:
        return CheckResult("journal", "FAIL", str(exc))
    try:
        rows = [" ".join(str(row[0]).split()) for row in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        return CheckResult("journal", "FAIL", f"{path}: {exc}")
    finally:
        conn.close()
    if rows != ["ok"]:
        return CheckResult(
            "journal", "FAIL", f"{path} is damaged (PRAGMA quick_check: {rows[0] if rows else '?'})"
        )
    return CheckResult("journal", "PASS", f"{path} quick_check ok")


def check_hard_stop(state_dir: Path, now_ms: int) -> CheckResult:
    """The hard-stop latch is clear (an unreadable latch file counts as latched, as in the engine)."""
    if not (state_dir / HARD_STOP_FILENAME).exists():
        return CheckResult("hard stop", "PASS", "not latched")
    record = HardStop.load(state_dir, now_ms).record
    if record is None:
        return CheckResult("hard stop", "PASS", "not latched (cleared)")
    return CheckResult(
        "hard stop",
        "FAIL",
        f"latched since {record.time_ms}: {record.reason} (clear: python -m hip3_trio hardstop clear --yes)",
    )


def local_checks(
    config: Config, *, signer_address: str | None, state_dir: Path, key_problem: str | None = None
) -> list[CheckResult]:
    """The checks that need no venue: key, state dir, journal, hard-stop latch."""
    results = [check_key(config, signer_address, key_problem), check_state_dir(state_dir)]
    if state_dir.is_dir():
        results += [check_journal(state_dir), check_hard_stop(state_dir, wall_clock_ms())]
    return results


# --- venue checks -----------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


async def check_signer_role(venue: InfoSource, signer_address: str | None, acting_for: str) -> CheckResult:
    """The signer is the account itself or an API wallet approved for it (``userRole``)."""
    name = "signer approved"
    if signer_address is None:
        return CheckResult(name, "FAIL", "no key, nothing to ask")
    signer = signer_address.lower()
    answer = await venue.info({"type": "userRole", "user": signer})
    role = answer.get("role") if isinstance(answer, dict) else None
    data = answer.get("data") if isinstance(answer, dict) else None
    if signer == acting_for:
        if role in ("user", "vault", "subAccount"):
            return CheckResult(name, "PASS", f"signer is the account ({role})")
        return CheckResult(name, "FAIL", f"signer is the account, venue role {role!r} (not funded?)")
    if role == "agent" and isinstance(data, dict):
        master = str(data.get("user", "")).lower()
        if master == acting_for:
            return CheckResult(name, "PASS", f"API wallet approved for {acting_for}")
        return CheckResult(name, "FAIL", f"API wallet of {master or '?'}, not of {acting_for}")
    return CheckResult(name, "FAIL", f"{signer} is not an API wallet of {acting_for} (venue role {role!r})")


async def check_agent_expiry(
    venue: InfoSource, signer_address: str | None, acting_for: str, now_ms: int
) -> CheckResult | None:
    """When the signer is a named API wallet of the account (``extraAgents``): how long its approval
    lasts. Expired is a FAIL (every order would be refused); less than `AGENT_WARN_LEFT_MS` left is a
    WARN (an unattended week would end in refused orders and a hard stop). None when the signer is the
    account itself; an unnamed agent is not listed and its expiry is unknown (a PASS that says so)."""
    if signer_address is None or signer_address.lower() == acting_for:
        return None
    name = "API wallet expiry"
    signer = signer_address.lower()
    answer = await venue.info({"type": "extraAgents", "user": acting_for})
    listed = [a for a in answer if isinstance(a, dict)] if isinstance(answer, list) else []
    entry = next((a for a in listed if str(a.get("address", "")).lower() == signer), None)
    if entry is None:
        return CheckResult(name, "PASS", "not a named API wallet: the venue publishes no expiry for it")
    until = entry.get("validUntil")
    if isinstance(until, bool) or not isinstance(until, int):
        return CheckResult(name, "WARN", f"unreadable validUntil: {until!r:.40}")
    left_h = (until - now_ms) / 3_600_000
    when = f"{entry.get('name', '?')!s:.30} valid until {format_time_ms(until)}"
    if until <= now_ms:
        return CheckResult(name, "FAIL", f"{when}: expired; approve a new API wallet")
    if until - now_ms < AGENT_WARN_LEFT_MS:
        return CheckResult(name, "WARN", f"{when} ({left_h:.0f} h left): renew before an unattended run")
    return CheckResult(name, "PASS", f"{when} ({left_h / 24:.0f} days left)")


async def preflight(
    venue: InfoSource,
    *,
    config: Config,
    user: str,
    signer_address: str | None,
    state_dir: Path,
    key_problem: str | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
) -> list[CheckResult]:
    """Every check, local then venue; the engine refuses to trade if any is FAIL (`exit_status`).

    `user` is the account traded (the vault when trading for one); `signer_address` the loaded key's
    address (None: no key; `key_problem` says why). An info request that fails or answers malformed
    is itself a FAIL line, never an exception.
    """
    results = local_checks(
        config, signer_address=signer_address, state_dir=state_dir, key_problem=key_problem
    )
    try:
        results += await _venue_checks(venue, config, user.lower(), signer_address, state_dir, clock_ms)
    except (InfoError, MarketsError, KeyError, TypeError, AttributeError) as exc:
        results.append(CheckResult("venue", "FAIL", f"{type(exc).__name__}: {exc}"))
    return results


async def _venue_checks(
    venue: InfoSource,
    config: Config,
    user: str,
    signer_address: str | None,
    state_dir: Path,
    clock_ms: Callable[[], int],
) -> list[CheckResult]:
    results: list[CheckResult] = []
    acting_for = (config.account_address or user).lower()
    results.append(await check_signer_role(venue, signer_address, acting_for))
    if (expiry := await check_agent_expiry(venue, signer_address, acting_for, clock_ms())) is not None:
        results.append(expiry)

    # Markets: perpDexs + meta(dex), the raw entries for their flags.
    dexes = parse_perp_dexs(raw_dexes := await venue.info({"type": "perpDexs"}))
    dex_entries = {e["name"]: e for e in raw_dexes[1:] if isinstance(e, dict)}
    metas: dict[str, dict[str, Any]] = {}
    for dex in dict.fromkeys(dex_of(coin) for coin in config.coins):
        if dex in dexes:
            metas[dex] = await venue.info({"type": "meta"} | ({"dex": dex} if dex else {}))
    fees = await venue.info({"type": "userFees", "user": user})
    cross, referral = _dec(fees.get("userCrossRate")), _dec(fees.get("activeReferralDiscount") or 0)
    leverage_by_coin: dict[str, Decimal] = {}
    for coin in config.coins:
        dex = dex_of(coin)
        if dex not in dexes:
            results.append(CheckResult(f"market {coin}", "FAIL", f"dex {dex!r} is not listed by perpDexs"))
            continue
        universe = metas[dex].get("universe", [])
        found = [(i, e) for i, e in enumerate(universe) if isinstance(e, dict) and e.get("name") == coin]
        if not found:
            results.append(CheckResult(f"market {coin}", "FAIL", f"not listed in meta({dex!r})"))
            continue
        index, entry = found[0]
        mode = entry.get("marginMode") or ("isolated only" if entry.get("onlyIsolated") else "cross allowed")
        active = await venue.info({"type": "activeAssetData", "user": user, "coin": coin})
        lev = active.get("leverage", {}) if isinstance(active, dict) else {}
        lev_value = _dec(lev.get("value")) if isinstance(lev, dict) else None
        if lev_value is not None and lev_value > 0:
            leverage_by_coin[coin] = lev_value
        value = (
            f"asset {asset_id(dexes[dex], index)}, max leverage {entry.get('maxLeverage')}, {mode}, "
            f"account leverage {lev.get('type', '?') if isinstance(lev, dict) else '?'} {lev_value}"
        )
        if entry.get("isDelisted"):
            results.append(CheckResult(f"market {coin}", "FAIL", f"DELISTED; {value}"))
            continue
        results.append(CheckResult(f"market {coin}", "PASS", value))
        # Fee: deployerFeeScale per asset in meta, else on the perpDexs entry (PROTOCOL.md, UNVERIFIED which).
        scale_text = entry.get("deployerFeeScale")
        site = "meta"
        if scale_text is None:
            scale_text, site = dex_entries.get(dex, {}).get("deployerFeeScale"), "perpDexs"
        scale = _dec(scale_text) if scale_text is not None else (Decimal(0) if dex == "" else None)
        growth = entry.get("growthMode") == "enabled"
        if cross is None or referral is None or scale is None:
            results.append(
                CheckResult(
                    f"fee {coin}",
                    "WARN",
                    f"not computed: userCrossRate {cross}, deployerFeeScale {scale_text}",
                )
            )
            continue
        bps = taker_fee_bps(UserFees(cross, referral), hip3=dex != "", fee_scale=scale, growth_mode=growth)
        assert bps is not None  # the scale is known here
        results.append(
            CheckResult(
                f"fee {coin}",
                "PASS",
                f"taker {bps.quantize(Decimal('0.001')).normalize()} bps (userCrossRate {cross}, referral "
                f"{referral}, s={scale} from {site}{', growth mode' if growth else ''})",
            )
        )

    # Balances per dex against the caps; the venue's time for the clock and the nonce mark.
    venue_time: int | None = None
    offset: int | None = None
    for dex in metas:
        before = clock_ms()
        state = await venue.info({"type": "clearinghouseState", "user": user, "dex": dex})
        after = clock_ms()
        if venue_time is None and isinstance(state.get("time"), int):
            venue_time = state["time"]
            offset = venue_time - (before + after) // 2
        balance = _dec(state.get("marginSummary", {}).get("accountValue")) or Decimal(0)
        coins = [c for c in config.coins if dex_of(c) == dex and c in leverage_by_coin]
        cap = config.limits.max_position_per_market_usd
        need = sum((cap / leverage_by_coin[c] for c in coins), Decimal(0))
        label = f"balance {dex or 'main'}"
        value = (
            f"accountValue {balance} vs margin {need.quantize(Decimal('0.01'))} for "
            f"{len(coins)} x max_position_per_market_usd {cap} at the account leverage"
        )
        if balance <= 0:
            results.append(CheckResult(label, "FAIL", f"unfunded: {value}"))
        elif balance < need:
            results.append(CheckResult(label, "FAIL", f"too small: {value}"))
        else:
            results.append(CheckResult(label, "PASS", value))

    limit = await venue.info({"type": "userRateLimit", "user": user})
    used, cap_n = limit.get("nRequestsUsed"), limit.get("nRequestsCap")
    if isinstance(used, int) and isinstance(cap_n, int):
        left = cap_n - used
        status: Status = "FAIL" if left <= 0 else "WARN" if left < BUDGET_WARN_LEFT else "PASS"
        results.append(
            CheckResult("request budget", status, f"{left} of {cap_n} left (cumVlm {limit.get('cumVlm')})")
        )
    else:
        results.append(CheckResult("request budget", "WARN", f"unreadable answer: {limit!r:.80}"))

    if venue_time is None or offset is None:
        results.append(CheckResult("clock offset", "FAIL", "no venue time (clearinghouseState without time)"))
        return results
    drift = abs(offset)
    status = "FAIL" if drift > DEFAULT_MAX_DRIFT_MS else "WARN" if drift > DEFAULT_WARN_DRIFT_MS else "PASS"
    results.append(
        CheckResult(
            "clock offset", status, f"venue - local = {offset:+d} ms (limit {DEFAULT_MAX_DRIFT_MS} ms)"
        )
    )
    results.append(check_nonce_mark(state_dir, venue_time))
    return results


def check_nonce_mark(state_dir: Path, venue_time_ms: int) -> CheckResult:
    """The persisted nonce mark: readable, and not so far ahead of the venue's time that the next nonce
    (above the mark) would be refused (more than a day ahead) or run ahead of the clock (WARN)."""
    path = state_dir / NONCE_FILENAME
    if not state_dir.is_dir():
        return CheckResult("nonce mark", "PASS", "none (no state dir yet)")
    try:
        mark = load_high_water(path)
    except (NonceStateError, OSError) as exc:
        return CheckResult("nonce mark", "FAIL", str(exc))
    if mark == 0:
        return CheckResult("nonce mark", "PASS", "none yet (fresh state dir)")
    ahead = mark - venue_time_ms
    value = f"{mark}, {ahead:+d} ms from venue time {venue_time_ms}"
    if ahead > NONCE_FUTURE_WINDOW_MS:
        return CheckResult("nonce mark", "FAIL", f"{value}: beyond the venue's 1-day window, nonces refused")
    if ahead > DEFAULT_MAX_DRIFT_MS:
        return CheckResult("nonce mark", "WARN", f"{value}: ahead of the venue (another env's state dir?)")
    return CheckResult("nonce mark", "PASS", value)


# --- the command ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Preflight checks (see docs/operations.md).")
    add_venue_options(parser, env="sim", state_dir_help="as for the engine")
    return parser


def main(argv: Sequence[str], *, out: Callable[[str], None] = print) -> int:
    """Run ``python -m hip3_trio check`` with `argv` (the arguments after ``check``); the exit code."""
    return run_command(build_parser(), argv, lambda args: _check(args, out))


def _check(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    """``check`` on its parsed arguments."""
    try:
        config = load_config(args.config, args.env)
    except ConfigError as exc:
        out(f"hip3-trio: {exc}")
        return EXIT_CONFIG
    state_dir = resolve_state_dir(config, args.state_dir)
    try:
        return trio.run(_run, args, config, state_dir, out)
    except ConfigError as exc:
        out(f"hip3-trio: {exc}")
        return EXIT_CONFIG


async def _run(args: argparse.Namespace, config: Config, state_dir: Path, out: Callable[[str], None]) -> int:
    from hip3_trio.ops.venue_client import open_venue_client, venue_endpoint

    async with venue_endpoint(args.env, args.ws_url, args.seed, config) as endpoint:
        signer_address = endpoint.signer.address if endpoint.signer is not None else None
        key_problem = endpoint.key_problem
        out(f"preflight: env={args.env} user={endpoint.user} state={state_dir} venue={endpoint.url}")
        try:
            async with open_venue_client(endpoint.connect) as venue:
                results = await preflight(
                    venue,
                    config=config,
                    user=endpoint.user,
                    signer_address=signer_address,
                    state_dir=state_dir,
                    key_problem=key_problem,
                )
        except (OSError, HandshakeError) as exc:
            results = local_checks(
                config, signer_address=signer_address, state_dir=state_dir, key_problem=key_problem
            )
            results.append(
                CheckResult(
                    "venue", "FAIL", f"cannot connect to {endpoint.url}: {type(exc).__name__} {exc}".rstrip()
                )
            )
    for line in format_table(results):
        out(line)
    status = exit_status(results)
    fails = sum(r.status == "FAIL" for r in results)
    out("preflight: OK" if status == EXIT_OK else f"preflight: {fails} FAIL")
    return status

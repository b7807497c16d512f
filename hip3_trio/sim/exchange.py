"""The exchange's state machine: signed actions in, statuses and stream events out.

Everything here is synchronous. ``execute`` verifies a signed action (signature → known signer →
action budget → nonce → expiry → vault), applies it, and returns the reply payload; the events it
caused (orderUpdates, userFills, account and book pushes) are queued and published by ``flush`` so the
caller can put the post reply on the wire first. ``tick`` is one oracle update for every market;
``run_scheduled_cancels`` fires due ``scheduleCancel`` times. Tasks that drive time live in
``server.Simulator``.

Costs and limits follow the venue (sources in PROTOCOL.md): fees by the HIP-3 rule (``fees``), the
per-address action budget (``budget``), isolated margin per position drawn from the per-dex balance
(``accounts``) with ``updateLeverage`` validated against the asset, and an order whose initial margin
the dex's free balance cannot cover refused as ``perpMarginRejected``.

Realism hooks (``realism.py``; driven by ``server.Simulator``): ``compete`` executes a competing
taker's IOC (pseudo-user ``COMPETITOR``; resting user orders it crosses fill as makers),
``competitor_targets`` says what they go for after an oracle update, and every taker's consumption of
synthetic levels is recorded in the market's ``Depletion`` (``refill`` shows what has come back).

Why ~700 lines: the simulated venue's state and its action rules (orders, cancels, nonces, budget,
margin, matching hooks, pushes) must change together, as the venue's do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
from eth_utils.crypto import keccak

from . import views
from .accounts import Account, AccountBook, FillRecord, Leverage, fill_direction
from .budget import EXPIRED_MULTIPLIER, RequestBudget, action_weight
from .clock import SimClock
from .config import SimConfig
from .faults import Faults
from .fees import FeeTier, fill_fee, fill_rate
from .markets import DEFAULT_DEXES, AssetSpec, DexSpec, Market, RestingOrder, build_specs
from .matching import Match, crossed_resting, take, would_cross
from .nonces import NonceBook
from .numbers import is_valid_price, is_valid_size, parse_decimal, to_wire, usd
from .realism import Depletion, competitor_levels
from .streams import Hub, SubKey
from .verify import U64_LIMIT, BadAction, canonical_action, parse_signature, recover_signer
from .views import OrderRecord

DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"
MIN_ORDER_USD = Decimal(10)
SCHEDULE_CANCEL_MIN_LEAD_MS = 5_000
# Whole-action and per-order texts. Sources: PROTOCOL.md and the third-party captures it cites; the
# ones marked UNVERIFIED are the simulator's best guess (no capture of the venue's text is known).
EXPIRED_ERROR = "Action already expired"  # UNVERIFIED
CROSS_NOT_ALLOWED = "Cross margin is not allowed for this asset."
INVALID_LEVERAGE = "Invalid leverage value"
SWITCH_WITH_POSITION = "Cannot switch leverage type with open position."
ISOLATED_DECREASE = (
    "Isolated position does not have sufficient margin available to decrease leverage. "
    "To decrease leverage, add margin to the position."
)
CROSS_DECREASE = (
    "Cross position does not have sufficient margin available to decrease leverage. "
    "To decrease leverage, deposit more collateral."
)
DELISTED_ERROR = "Trading is halted."  # UNVERIFIED: the venue's answer to an order on a delisted asset
Reply = tuple[str, Any]
# The pseudo-user of competing takers' orders: never an account, so it never matches an account's
# self-trade check and gets no fills of its own.
COMPETITOR = "competitor"


def _ok(kind: str, data: Any = None) -> Reply:
    response: dict[str, Any] = {"type": kind}
    if data is not None:
        response["data"] = data
    return "action", {"status": "ok", "response": response}


def _err(message: str) -> Reply:
    return "action", {"status": "err", "response": message}


def _nothing() -> None:
    return None


IDS_PER_MS = 1000


@attrs.define
class IdSequence:
    """Order or trade ids that never repeat across simulator runs, as the venue's never do.

    They count up by one from the simulator's start time (epoch ms, `SimClock.start_ms`) × 1000, so a
    run that starts later starts above every id of an earlier one unless that run issued more than 1000
    ids per millisecond between the two starts. Restarts of `--env sim` (the wall clock at start) into
    one journal therefore never collide on the journal's unique tid; a fixed `SimConfig.base_epoch_ms`
    gives the same ids on every run (deterministic tests). About 1.8e15 today: exact in JSON (< 2**53).
    """

    clock: SimClock
    _next: int | None = None

    def take(self) -> int:
        """The next id."""
        if self._next is None:
            self._next = self.clock.start_ms() * IDS_PER_MS
        value = self._next
        self._next += 1
        return value


@attrs.define(eq=False)
class Exchange:
    """Markets, accounts, orders and nonces of one simulated venue."""

    config: SimConfig
    clock: SimClock
    faults: Faults
    hub: Hub
    dexes: tuple[DexSpec, ...]
    specs: list[AssetSpec]
    markets: dict[str, Market]
    by_asset: dict[int, Market]
    accounts: AccountBook
    nonces: NonceBook
    orders: dict[int, OrderRecord] = attrs.Factory(dict)
    cloids: dict[tuple[str, str], int] = attrs.Factory(dict)
    oids: IdSequence = attrs.Factory(lambda self: IdSequence(self.clock), takes_self=True)
    tids: IdSequence = attrs.Factory(lambda self: IdSequence(self.clock), takes_self=True)
    on_schedule_change: Callable[[], None] = _nothing
    _updates: dict[str, list[dict[str, Any]]] = attrs.Factory(lambda: defaultdict(list))
    _fills: dict[str, list[dict[str, Any]]] = attrs.Factory(lambda: defaultdict(list))
    _dirty_accounts: set[tuple[str, str]] = attrs.Factory(set)
    _dirty_books: set[str] = attrs.Factory(set)
    _last_bbo: dict[str, Any] = attrs.Factory(dict)
    # Info answers served as recorded (a replay: perpDexs, meta, userFees), by `info.recorded_key`.
    recorded_info: dict[str, Any] = attrs.Factory(dict)

    @classmethod
    def create(
        cls,
        config: SimConfig,
        clock: SimClock,
        faults: Faults,
        hub: Hub,
        dexes: tuple[DexSpec, ...] = DEFAULT_DEXES,
    ) -> Exchange:
        specs = build_specs(dexes)
        markets = {s.name: Market.create(s, config.market, config.seed) for s in specs}
        if config.realism.impact.enabled:
            for market in markets.values():
                market.depletion = Depletion(config.realism.impact)
        return cls(
            config=config,
            clock=clock,
            faults=faults,
            hub=hub,
            dexes=dexes,
            specs=specs,
            markets=markets,
            by_asset={m.spec.asset: m for m in markets.values()},
            accounts=AccountBook(
                initial_balance=config.initial_balance,
                dexes=tuple(d.name for d in dexes),
                fee_tier=FeeTier(
                    taker_rate=config.taker_rate,
                    maker_rate=config.maker_rate,
                    staking_discount=config.staking_discount,
                    referral_discount=config.referral_discount,
                ),
                budget=RequestBudget(
                    base=config.request_budget_base,
                    used=config.initial_requests_used,
                    earning_volume=config.initial_cum_volume,
                    cum_volume=config.initial_cum_volume,
                ),
            ),
            nonces=NonceBook(
                set_size=config.nonce_set_size,
                past_window_ms=config.nonce_past_window_ms,
                future_window_ms=config.nonce_future_window_ms,
            ),
        )

    # -- lookups ---------------------------------------------------------------------------------

    def dex_names(self) -> frozenset[str]:
        return frozenset(d.name for d in self.dexes)

    def markets_of(self, dex: str) -> list[Market]:
        return [m for m in self.markets.values() if m.spec.dex == dex]

    def open_orders(self, user: str, dex: str | None = None) -> list[OrderRecord]:
        return [
            r
            for m in self.markets.values()
            if dex is None or m.spec.dex == dex
            for o in m.resting
            if o.user == user and (r := self.orders[o.oid]).status == "open"
        ]

    def dex_spec(self, dex: str) -> DexSpec:
        return next(d for d in self.dexes if d.name == dex)

    def fee_scale(self, dex: str) -> Decimal | None:
        """The dex's deployerFeeScale (None for the main dex, which has no HIP-3 factor)."""
        if not dex:
            return None
        return self.config.deployer_fee_scales.get(dex, Decimal(1))

    def growth_mode(self, market: Market) -> bool:
        return market.spec.name in self.config.growth_mode_markets

    def default_leverage(self, market: Market) -> Leverage:
        """The setting of an asset whose leverage was never set: cross where allowed, else isolated."""
        wanted = self.config.default_leverage or market.spec.max_leverage
        return Leverage(is_cross=not market.spec.isolated_only, value=min(wanted, market.spec.max_leverage))

    def leverage_of(self, account: Account | None, market: Market) -> Leverage:
        if account is not None and (setting := account.leverage.get(market.spec.name)) is not None:
            return setting
        return self.default_leverage(market)

    def available_margin(self, user: str, dex: str) -> Decimal:
        """What the dex balance has free: isolated margins and resting orders' margin set aside; cross
        positions margined at the mark, their PnL counted."""
        account = self.accounts.users[user]
        value = account.balances.get(dex, Decimal(0))
        used = Decimal(0)
        for market in self.markets_of(dex):
            lev = self.leverage_of(account, market)
            pos = account.positions.get(market.spec.name)
            if pos is not None and pos.szi != 0:
                if lev.is_cross:
                    value += (market.mark - pos.entry_px) * pos.szi
                    used += abs(pos.szi) * market.mark / lev.value
                else:
                    used += pos.margin
            for order in market.resting:
                if order.user == user and not order.reduce_only:
                    used += order.limit_px * order.sz / lev.value
        return value - used

    # -- signed actions --------------------------------------------------------------------------

    def execute(self, payload: object) -> Reply:
        """Verify and apply one signed action; returns (response type, payload) for the post reply."""
        self.refill()
        if not isinstance(payload, dict):
            return "error", DESERIALIZE_ERROR
        try:
            action = canonical_action(payload.get("action"))
            nonce = payload.get("nonce")
            if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < U64_LIMIT:
                raise BadAction("nonce")
            signature = parse_signature(payload.get("signature"))
            vault = payload.get("vaultAddress")
            if vault is not None and (not isinstance(vault, str) or len(vault) != 42):
                raise BadAction("vaultAddress")
            vault = vault.lower() if vault else None
            expires = payload.get("expiresAfter")
            if expires is not None and (
                isinstance(expires, bool) or not isinstance(expires, int) or not 0 <= expires < U64_LIMIT
            ):
                raise BadAction("expiresAfter")
            signer = recover_signer(action, nonce, signature, self.config.source, vault, expires)
        except (BadAction, ValueError):
            return "error", DESERIALIZE_ERROR
        master = self.accounts.master_of(signer, self.clock.now_ms())
        if master is None:
            return _err(f"{self.config.signer_error_prefix}User or API Wallet {signer} does not exist.")
        # The budget is the acting address's (a vault or sub-account is a user of its own). An action
        # refused whole costs nothing; a budget refusal leaves the nonce unused.
        user = vault if vault is not None and self.accounts.vaults.get(vault) == master else master
        budget = self.accounts.users[user].budget
        cap, weight = action_weight(action)
        elapsed = self.clock.elapsed_s()
        refusal = budget.refusal(cap, weight, elapsed, self.config.request_trickle_s)
        if refusal is not None:
            return _err(refusal)
        now = self.clock.now_ms()
        problem = self.nonces.check(signer, nonce, now)
        if problem is not None:
            return _err(problem)
        self.nonces.consume(signer, nonce)
        if expires is not None and expires < now:
            budget.charge(EXPIRED_MULTIPLIER * weight)
            return _err(EXPIRED_ERROR)
        if vault is not None and user != vault:
            return _err(f"Vault not registered: {vault}")
        budget.spend(cap, weight, elapsed)
        kind = action["type"]
        if kind == "order":
            statuses = [self._place(user, order, now) for order in action["orders"]]
            return _ok("order", {"statuses": statuses})
        if kind == "cancel":
            return _ok(
                "cancel", {"statuses": [self._cancel(user, c["a"], c["o"], now) for c in action["cancels"]]}
            )
        if kind == "cancelByCloid":
            statuses = [self._cancel_cloid(user, c["asset"], c["cloid"], now) for c in action["cancels"]]
            return _ok("cancel", {"statuses": statuses})
        if kind == "scheduleCancel":
            return self._schedule_cancel(user, action.get("time"), now)
        if kind == "updateLeverage":
            return self._update_leverage(user, action["asset"], action["isCross"], action["leverage"])
        return _ok("default")  # noop: the nonce is now used, nothing else happens

    def _place(self, user: str, wire: dict[str, Any], now: int) -> Any:
        asset = wire["a"]
        market = self.by_asset.get(asset)
        if market is None:
            return {"error": f"Order has invalid asset. asset={asset}"}
        if "limit" not in wire["t"]:
            return {"error": f"Trigger orders are not supported by the simulator. asset={asset}"}
        if market.spec.delisted:
            return {"error": f"{DELISTED_ERROR} asset={asset}"}
        tif = wire["t"]["limit"]["tif"]
        is_buy: bool = wire["b"]
        px = parse_decimal(wire["p"])
        sz = parse_decimal(wire["s"])
        reduce_only: bool = wire["r"]
        cloid: str | None = wire.get("c")
        szd = market.spec.sz_decimals
        if not is_valid_price(px, szd):
            return {"error": f"Price must be divisible by tick size. asset={asset}"}
        if not is_valid_size(sz, szd):
            return {"error": "Order has invalid size."}
        if not reduce_only and px * sz < MIN_ORDER_USD:
            return {"error": f"Order must have minimum value of $10. asset={asset}"}
        account = self.accounts.users[user]
        oid = self.oids.take()
        record = OrderRecord(
            oid=oid,
            user=user,
            coin=market.spec.name,
            asset=asset,
            is_buy=is_buy,
            limit_px=px,
            sz=sz,
            orig_sz=sz,
            timestamp=now,
            tif=tif,
            reduce_only=reduce_only,
            cloid=cloid,
            status="open",
            status_timestamp=now,
        )
        self.orders[oid] = record
        if cloid is not None:
            self.cloids[(user, cloid)] = oid
        pos = account.positions.get(market.spec.name)
        szi = pos.szi if pos is not None else Decimal(0)
        if reduce_only:
            if szi == 0 or (szi > 0) == is_buy:
                return self._reject(
                    record, "reduceOnlyRejected", f"Reduce only order would increase position. asset={asset}"
                )
            record.sz = record.orig_sz = min(sz, abs(szi))
        else:
            increase = sz if szi == 0 or (szi > 0) == is_buy else max(Decimal(0), sz - abs(szi))
            required = px * increase / self.leverage_of(account, market).value
            if increase > 0 and required > self.available_margin(user, market.spec.dex):
                return self._reject(
                    record, "perpMarginRejected", f"Insufficient margin to place order. asset={asset}"
                )
        if tif == "Alo":
            if would_cross(market, is_buy, px, user):
                bid, ask = market.best_bid(), market.best_ask()
                bbo = f"{to_wire(bid) if bid is not None else ''}@{to_wire(ask) if ask is not None else ''}"
                return self._reject(
                    record,
                    "badAloPxRejected",
                    f"Post only order would have immediately matched, bbo was {bbo}. asset={asset}",
                )
            return self._rest(market, record)
        matches = take(market, is_buy, px, record.sz, user)
        if not matches:
            if tif == "Ioc":
                return self._reject(
                    record,
                    "iocCancelRejected",
                    f"Order could not immediately match against any resting orders. asset={asset}",
                )
            return self._rest(market, record)
        tx_hash = "0x" + keccak(f"{self.config.seed}:{oid}:{now}".encode()).hex()
        filled, notional = self._settle(market, is_buy, matches, record, now, tx_hash)
        avg = to_wire((notional / filled).quantize(Decimal("0.00000001")))
        remaining = record.sz - filled
        if remaining > 0 and tif == "Gtc":
            record.sz = remaining
            return self._rest(market, record)
        record.sz = remaining
        skip = tif == "Ioc" and self.faults.take("skip_ioc_order_updates")
        self._set_status(record, "filled" if remaining == 0 else "canceled", now, publish=not skip)
        status: dict[str, Any] = {"totalSz": to_wire(filled), "avgPx": avg, "oid": oid}
        if cloid is not None:
            status["cloid"] = cloid
        return {"filled": status}

    def _settle(
        self,
        market: Market,
        is_buy: bool,
        matches: list[Match],
        taker: OrderRecord | None,
        now: int,
        tx_hash: str,
    ) -> tuple[Decimal, Decimal]:
        """Book one taker's executions: its fills (``taker`` None: a competitor, not an account), the
        resting makers' fills, and what it consumed from synthetic levels (impact). (size, notional)."""
        filled = Decimal(0)
        notional = Decimal(0)
        for match in matches:
            if taker is not None:
                self._fill(
                    taker.user,
                    market,
                    is_buy,
                    match.px,
                    match.sz,
                    taker,
                    crossed=True,
                    now=now,
                    tx_hash=tx_hash,
                )
            if match.maker is not None:
                maker = self.orders[match.maker.oid]
                maker.sz = match.maker.sz
                self._fill(
                    maker.user,
                    market,
                    not is_buy,
                    match.px,
                    match.sz,
                    maker,
                    crossed=False,
                    now=now,
                    tx_hash=tx_hash,
                )
                if match.maker.sz == 0:
                    self._set_status(maker, "filled", now)
            elif market.depletion is not None:
                market.depletion.consume(not is_buy, match.px, match.sz, self.elapsed_ms(), market.oracle)
            filled += match.sz
            notional += match.px * match.sz
        self._dirty_books.add(market.spec.name)
        return filled, notional

    def _reject(self, record: OrderRecord, status: str, message: str) -> Any:
        """Refused at the book: the order gets an oid and a status (orderStatus knows it), no fill."""
        self._set_status(record, status, record.timestamp, publish=self.config.push_rejections)
        return {"error": message}

    def _rest(self, market: Market, record: OrderRecord) -> Any:
        market.resting.append(
            RestingOrder(
                oid=record.oid,
                user=record.user,
                coin=record.coin,
                asset=record.asset,
                is_buy=record.is_buy,
                limit_px=record.limit_px,
                sz=record.sz,
                orig_sz=record.orig_sz,
                timestamp=record.timestamp,
                tif=record.tif,
                reduce_only=record.reduce_only,
                cloid=record.cloid,
            )
        )
        self._set_status(record, "open", record.timestamp)
        self._dirty_books.add(market.spec.name)
        status: dict[str, Any] = {"oid": record.oid}
        if record.cloid is not None:
            status["cloid"] = record.cloid
        return {"resting": status}

    def _set_status(self, record: OrderRecord, status: str, now: int, *, publish: bool = True) -> None:
        record.status = status
        record.status_timestamp = now
        if publish:
            self._updates[record.user].append(views.order_update(record))
        self._dirty_accounts.add((record.user, self.markets[record.coin].spec.dex))

    def _fill(
        self,
        user: str,
        market: Market,
        is_buy: bool,
        px: Decimal,
        sz: Decimal,
        record: OrderRecord,
        *,
        crossed: bool,
        now: int,
        tx_hash: str,
    ) -> None:
        account = self.accounts.users[user]
        dex = market.spec.dex
        growth = self.growth_mode(market)
        rate = fill_rate(account.fee_tier, crossed=crossed, fee_scale=self.fee_scale(dex), growth_mode=growth)
        notional = px * sz
        fee = fill_fee(notional, rate)
        start = account.position(market.spec.name).szi
        direction = fill_direction(start, is_buy, sz)
        lev = self.leverage_of(account, market)
        closed = account.apply_fill(dex, market.spec.name, is_buy, px, sz, fee, lev)
        account.budget.traded(notional, growth_mode=growth)
        if crossed:
            account.taker_volume += notional
        else:
            account.maker_volume += notional
        tid = self.tids.take()
        fill = FillRecord(
            coin=market.spec.name,
            px=px,
            sz=sz,
            is_buy=is_buy,
            time=now,
            start_position=start,
            dir=direction,
            closed_pnl=closed,
            hash=tx_hash,
            oid=record.oid,
            crossed=crossed,
            fee=fee,
            tid=tid,
            cloid=record.cloid,
            fee_token=self.dex_spec(dex).collateral_name,
        )
        account.fills.append(fill)
        self._fills[user].append(fill.to_wire())
        market.day_volume += px * sz
        market.open_interest = sum(
            (
                abs(a.positions[market.spec.name].szi)
                for a in self.accounts.users.values()
                if market.spec.name in a.positions
            ),
            Decimal(0),
        )
        self._dirty_accounts.add((user, market.spec.dex))

    def _remove_resting(self, record: OrderRecord) -> None:
        market = self.markets[record.coin]
        market.resting[:] = [o for o in market.resting if o.oid != record.oid]
        self._dirty_books.add(record.coin)

    def _cancel(self, user: str, asset: int, oid: int, now: int) -> Any:
        record = self.orders.get(oid)
        if record is None or record.user != user or record.asset != asset or record.status != "open":
            return {"error": f"Order was never placed, already canceled, or filled. asset={asset}"}
        self._remove_resting(record)
        self._set_status(record, "canceled", now)
        return "success"

    def _cancel_cloid(self, user: str, asset: int, cloid: str, now: int) -> Any:
        oid = self.cloids.get((user, cloid))
        if oid is None:
            return {"error": f"Order was never placed, already canceled, or filled. asset={asset}"}
        return self._cancel(user, asset, oid, now)

    def _schedule_cancel(self, user: str, when: int | None, now: int) -> Reply:
        account = self.accounts.users[user]
        if when is not None:
            required = self.config.schedule_cancel_min_volume
            if account.volume < required:
                traded = to_wire(usd(account.volume).quantize(Decimal("0.01")))
                return _err(
                    "Cannot set scheduled cancel time until enough volume traded. "
                    f"Required: ${to_wire(required)}. Traded: ${traded}."
                )
            if when < now + SCHEDULE_CANCEL_MIN_LEAD_MS:
                return _err("Scheduled cancel time too early, must be at least 5 seconds from now.")
        account.scheduled_cancel_ms = when
        self.on_schedule_change()
        return _ok("default")

    def _update_leverage(self, user: str, asset: int, is_cross: bool, value: int) -> Reply:
        """Set a user's leverage on one asset (isolated or cross), as the venue validates it."""
        market = self.by_asset.get(asset)
        if market is None:
            return _err(f"Invalid asset: {asset}")  # UNVERIFIED text
        if is_cross and market.spec.isolated_only:
            return _err(CROSS_NOT_ALLOWED)
        if not 1 <= value <= market.spec.max_leverage:
            return _err(INVALID_LEVERAGE)
        account = self.accounts.users[user]
        current = self.leverage_of(account, market)
        pos = account.positions.get(market.spec.name)
        if pos is not None and pos.szi != 0:
            if current.is_cross != is_cross:
                return _err(SWITCH_WITH_POSITION)
            if value < current.value:
                notional = abs(pos.szi) * market.mark
                if is_cross:
                    extra = notional / value - notional / current.value
                    if extra > self.available_margin(user, market.spec.dex):
                        return _err(CROSS_DECREASE)
                elif pos.margin + (market.mark - pos.entry_px) * pos.szi < notional / value:
                    return _err(ISOLATED_DECREASE)
        account.leverage[market.spec.name] = Leverage(is_cross=is_cross, value=value)
        self._dirty_accounts.add((user, market.spec.dex))
        return _ok("default")

    def cancel_open_orders(self, user: str, status: str) -> int:
        """Cancel every open order of ``user`` with ``status`` (e.g. the venue's ``internalCancel``)."""
        now = self.clock.now_ms()
        records = self.open_orders(user)
        for record in records:
            self._remove_resting(record)
            self._set_status(record, status, now)
        self.flush()
        return len(records)

    # -- time-driven changes ---------------------------------------------------------------------

    def next_scheduled_cancel_ms(self) -> int | None:
        times = [
            a.scheduled_cancel_ms for a in self.accounts.users.values() if a.scheduled_cancel_ms is not None
        ]
        return min(times) if times else None

    def run_scheduled_cancels(self) -> None:
        """Cancel every open order of accounts whose scheduled cancel time has come."""
        now = self.clock.now_ms()
        for account in self.accounts.users.values():
            if account.scheduled_cancel_ms is None or account.scheduled_cancel_ms > now:
                continue
            account.scheduled_cancel_ms = None
            for record in self.open_orders(account.address):
                self._remove_resting(record)
                self._set_status(record, "scheduledCancel", now)
        self.flush()

    def tick(self) -> None:
        """One oracle update on every market; resting orders the new book crosses get filled."""
        now = self.clock.now_ms()
        for market in self.markets.values():
            market.step()
            market.refill(self.elapsed_ms())
            for order in crossed_resting(market):
                record = self.orders[order.oid]
                tx_hash = "0x" + keccak(f"{self.config.seed}:maker:{order.oid}:{now}".encode()).hex()
                self._fill(
                    order.user,
                    market,
                    order.is_buy,
                    order.limit_px,
                    order.sz,
                    record,
                    crossed=False,
                    now=now,
                    tx_hash=tx_hash,
                )
                record.sz = Decimal(0)
                order.sz = Decimal(0)
                self._set_status(record, "filled", now)
            market.resting[:] = [o for o in market.resting if o.sz > 0]
            self._dirty_books.add(market.spec.name)
            self.hub.publish(
                ("activeAssetCtx", market.spec.name),
                {"channel": "activeAssetCtx", "data": views.ctx_data(market)},
            )
        self.flush()

    # -- competing takers (realism.CompetitionModel) ---------------------------------------------

    def elapsed_ms(self) -> float:
        """Milliseconds on the Trio clock (monotonic, no skew): the timeline of the realism models."""
        return self.clock.elapsed_s() * 1000.0

    def refill(self) -> None:
        """Bring every market's synthetic levels up to date with the impact model."""
        now = self.elapsed_ms()
        for market in self.markets.values():
            market.refill(now)

    def refilling(self) -> bool:
        """Some market's taken liquidity is still coming back (the impact model)."""
        now = self.elapsed_ms()
        return any(m.depletion is not None and m.depletion.refilling(now) for m in self.markets.values())

    def publish_requotes(self) -> None:
        """Publish each book whose best level changed as the impact model refilled it.

        Makers requoting what takers consumed is a change of the book like any other, and the venue
        pushes `bbo` on every change of the best level; without this a client would see a swept level
        come back only with the next oracle update or fill. The block loop calls it at every block
        boundary while `refilling()`. A book never published yet is left to its subscription snapshot."""
        self.refill()
        for coin, market in self.markets.items():
            last = self._last_bbo.get(coin)
            if last is not None and last != views.bbo_key(market):
                self._dirty_books.add(coin)
        if self._dirty_books:
            self.flush()

    def competitor_targets(self) -> list[tuple[str, bool, Decimal, Decimal]]:
        """What competing takers go for now: (coin, is_buy, limit px, size) per side of each market
        whose synthetic levels are priced through the oracle by the model's minimum edge."""
        edge = self.config.realism.competition.min_edge_bps
        targets = []
        for coin, market in self.markets.items():
            for is_buy, levels in ((True, market.asks), (False, market.bids)):
                taken = competitor_levels([(lvl.px, lvl.sz) for lvl in levels], is_buy, market.oracle, edge)
                if taken:
                    targets.append((coin, is_buy, taken[-1][0], sum((sz for _, sz in taken), Decimal(0))))
        return targets

    def compete(self, coin: str, is_buy: bool, limit_px: Decimal, size: Decimal) -> Decimal:
        """A competitor's IOC: takes what is left within its limit (resting user orders included, which
        fill as makers); returns the size it got. Events are published by the next ``flush``."""
        market = self.markets[coin]
        market.refill(self.elapsed_ms())
        matches = take(market, is_buy, limit_px, size, COMPETITOR)
        if not matches:
            return Decimal(0)
        now = self.clock.now_ms()
        tx_hash = "0x" + keccak(f"{self.config.seed}:competitor:{coin}:{now}".encode()).hex()
        return self._settle(market, is_buy, matches, None, now, tx_hash)[0]

    # -- views -----------------------------------------------------------------------------------

    def clearinghouse_state(self, user: str, dex: str, *, empty: bool = False) -> dict[str, Any]:
        account = self.accounts.users.get(user)
        markets = self.markets_of(dex)
        settings = {m.spec.name: self.leverage_of(account, m) for m in markets}
        return views.clearinghouse_state(account, dex, markets, settings, self.clock.now_ms(), empty=empty)

    def active_asset_data(self, user: str, market: Market) -> dict[str, Any]:
        """The ``activeAssetData`` answer: leverage, what can be traded each way, mark."""
        account = self.accounts.users.get(user)
        lev = self.leverage_of(account, market)
        pos = account.positions.get(market.spec.name) if account is not None else None
        free = max(self.available_margin(user, market.spec.dex), Decimal(0)) if account else Decimal(0)
        return views.active_asset_data(user, market, lev, pos, free)

    # -- publishing ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Publish every event queued since the last flush."""
        now = self.clock.now_ms()
        self.refill()
        for user, updates in self._updates.items():
            if updates:
                self.hub.publish(("orderUpdates", user), {"channel": "orderUpdates", "data": updates})
        self._updates.clear()
        for user, fills in self._fills.items():
            if fills:
                self.hub.publish(
                    ("userFills", user), {"channel": "userFills", "data": {"user": user, "fills": fills}}
                )
        self._fills.clear()
        for user, dex in sorted(self._dirty_accounts):
            key: SubKey = ("clearinghouseState", user, dex)
            if self.hub.wanted(key):
                state = self.clearinghouse_state(user, dex)
                self.hub.publish(
                    key,
                    {
                        "channel": "clearinghouseState",
                        "data": {"dex": dex, "user": user, "clearinghouseState": state},
                    },
                )
            key = ("openOrders", user, dex)
            if self.hub.wanted(key):
                orders = [views.order_wire(r) for r in self.open_orders(user, dex)]
                self.hub.publish(
                    key, {"channel": "openOrders", "data": {"dex": dex, "user": user, "orders": orders}}
                )
        self._dirty_accounts.clear()
        for coin in sorted(self._dirty_books):
            market = self.markets[coin]
            bbo = views.bbo_key(market)
            if self._last_bbo.get(coin) != bbo:
                self._last_bbo[coin] = bbo
                self.hub.publish(("bbo", coin), {"channel": "bbo", "data": views.bbo_data(market, now)})
            self.hub.publish(("l2Book", coin), {"channel": "l2Book", "data": views.l2_data(market, now)})
        self._dirty_books.clear()

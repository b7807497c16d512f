"""Wire shapes built from simulator state: the JSON the venue sends for books, contexts, accounts,
orders and metadata. Pure functions, shared by info replies and subscription pushes so the two never
disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any

import attrs

from .accounts import Account, Leverage, Position, signed_wire
from .markets import AssetSpec, DexSpec, Market
from .numbers import round_size, to_wire, usd

# ISO-8601 without a timezone, as the venue writes `lastDeployerFeeScaleChangeTime` and
# `lastGrowthModeChangeTime` (TS-SDK perpDexs.ts); fixed in the simulator.
CHANGE_TIME = "2025-10-01T00:00:00"


@attrs.define
class OrderRecord:
    """Everything the venue remembers about an order, for orderUpdates and orderStatus."""

    oid: int
    user: str
    coin: str
    asset: int
    is_buy: bool
    limit_px: Decimal
    sz: Decimal
    orig_sz: Decimal
    timestamp: int
    tif: str
    reduce_only: bool
    cloid: str | None
    status: str
    status_timestamp: int


def _level(px: Decimal, sz: Decimal, n: int) -> dict[str, Any]:
    return {"px": to_wire(px), "sz": to_wire(sz), "n": n}


def bbo_data(market: Market, time_ms: int) -> dict[str, Any]:
    bids = market.l2_levels(True, 1)
    asks = market.l2_levels(False, 1)
    return {
        "coin": market.spec.name,
        "time": time_ms,
        "bbo": [_level(*bids[0]) if bids else None, _level(*asks[0]) if asks else None],
    }


def bbo_key(market: Market) -> tuple[Any, ...]:
    """What a bbo push reports, to push only on change."""
    return (tuple(market.l2_levels(True, 1)), tuple(market.l2_levels(False, 1)))


def l2_data(market: Market, time_ms: int) -> dict[str, Any]:
    return {
        "coin": market.spec.name,
        "time": time_ms,
        "levels": [
            [_level(*lvl) for lvl in market.l2_levels(True)],
            [_level(*lvl) for lvl in market.l2_levels(False)],
        ],
    }


def asset_ctx(market: Market) -> dict[str, Any]:
    mid = market.mid()
    premium = (market.mark - market.oracle) / market.oracle if market.oracle else Decimal(0)
    bid, ask = market.best_bid(), market.best_ask()
    return {
        "funding": "0.0000125",
        "openInterest": to_wire(market.open_interest),
        "prevDayPx": to_wire(market.prev_day_px),
        "dayNtlVlm": to_wire(usd(market.day_volume)),
        "premium": signed_wire(premium.quantize(Decimal("0.00000001"))),
        "oraclePx": to_wire(market.oracle),
        "markPx": to_wire(market.mark),
        "midPx": to_wire(mid) if mid is not None else None,
        "impactPxs": [to_wire(bid), to_wire(ask)] if bid is not None and ask is not None else None,
        "dayBaseVlm": "0",
    }


def ctx_data(market: Market) -> dict[str, Any]:
    return {"coin": market.spec.name, "ctx": asset_ctx(market)}


def perp_dexs(dexes: tuple[DexSpec, ...], fee_scales: Mapping[str, Decimal] | None) -> list[Any]:
    """The ``perpDexs`` answer (TS-SDK perpDexs.ts); ``fee_scales`` None leaves out ``deployerFeeScale``
    (the switch for a venue that publishes it only in ``meta``)."""
    out: list[Any] = [None]
    for dex in dexes[1:]:
        entry: dict[str, Any] = {
            "name": dex.name,
            "fullName": dex.full_name,
            "deployer": dex.deployer,
            "oracleUpdater": None,
            "feeRecipient": None,
            "assetToStreamingOiCap": [],
            "subDeployers": [],
        }
        if fee_scales is not None:
            entry["deployerFeeScale"] = to_wire(fee_scales.get(dex.name, Decimal(1)))
            entry["lastDeployerFeeScaleChangeTime"] = CHANGE_TIME
        entry["assetToFundingMultiplier"] = []
        out.append(entry)
    return out


def meta(
    specs: list[AssetSpec],
    *,
    collateral_token: int = 0,
    growth_mode: frozenset[str] = frozenset(),
    fee_scale: Decimal | None = None,
) -> dict[str, Any]:
    """The ``meta(dex)`` answer (docs:perpetuals, TS-SDK meta.ts): optional flags appear only when set;
    ``fee_scale`` adds a per-asset ``deployerFeeScale`` (the switch for where the venue publishes it)."""
    universe: list[dict[str, Any]] = []
    for s in specs:
        entry: dict[str, Any] = {
            "szDecimals": s.sz_decimals,
            "name": s.name,
            "maxLeverage": s.max_leverage,
            "marginTableId": s.max_leverage,
        }
        if s.only_isolated:
            entry["onlyIsolated"] = True
        if s.delisted:
            entry["isDelisted"] = True
        if s.margin_mode is not None:
            entry["marginMode"] = s.margin_mode
        if s.name in growth_mode:
            entry["growthMode"] = "enabled"
            entry["lastGrowthModeChangeTime"] = CHANGE_TIME
        if fee_scale is not None and s.dex:
            entry["deployerFeeScale"] = to_wire(fee_scale)
        universe.append(entry)
    tables = sorted({s.max_leverage for s in specs})
    return {
        "universe": universe,
        "marginTables": [
            [t, {"description": "", "marginTiers": [{"lowerBound": "0", "maxLeverage": t}]}] for t in tables
        ],
        "collateralToken": collateral_token,
    }


def clearinghouse_state(
    account: Account | None,
    dex: str,
    markets: list[Market],
    leverage: Mapping[str, Leverage],
    time_ms: int,
    *,
    empty: bool = False,
) -> dict[str, Any]:
    """The ``clearinghouseState`` of one user on one dex (zero positions when ``empty``).

    An isolated position shows ``leverage: {type: "isolated", value, rawUsd}`` with ``rawUsd`` = its
    margin less its signed entry notional, and ``marginUsed`` = its margin plus its unrealised PnL (the
    docs' example satisfies marginUsed = rawUsd + szi x mark); a cross one is margined at the mark.
    """
    balance = account.balances.get(dex, Decimal(0)) if account else Decimal(0)
    positions: list[dict[str, Any]] = []
    ntl = Decimal(0)
    upnl_total = Decimal(0)
    margin_total = Decimal(0)
    cross_margin = Decimal(0)
    raw = balance
    for market in markets:
        pos = account.positions.get(market.spec.name) if account else None
        if pos is None or pos.szi == 0:
            continue
        lev = leverage[market.spec.name]
        value = abs(pos.szi) * market.mark
        upnl = (market.mark - pos.entry_px) * pos.szi
        if lev.is_cross:
            margin = value / lev.value
            cross_margin += margin
            wire_leverage = lev.to_wire()
        else:
            margin = max(pos.margin + upnl, Decimal(0))
            wire_leverage = lev.to_wire(pos.margin - pos.szi * pos.entry_px)
        ntl += value
        upnl_total += upnl
        margin_total += margin
        raw -= pos.szi * pos.entry_px
        if empty:
            continue
        positions.append(
            {
                "type": "oneWay",
                "position": {
                    "coin": market.spec.name,
                    "szi": signed_wire(pos.szi),
                    "leverage": wire_leverage,
                    "entryPx": to_wire(usd(pos.entry_px).normalize()),
                    "positionValue": to_wire(usd(value)),
                    "unrealizedPnl": signed_wire(usd(upnl)),
                    "returnOnEquity": signed_wire(
                        (upnl / (abs(pos.szi) * pos.entry_px / lev.value)).quantize(Decimal("0.00000001"))
                    ),
                    "liquidationPx": None,
                    "marginUsed": to_wire(usd(margin)),
                    "maxLeverage": market.spec.max_leverage,
                    "cumFunding": {"allTime": "0", "sinceOpen": "0", "sinceChange": "0"},
                },
            }
        )
    value = balance + upnl_total
    summary = {
        "accountValue": signed_wire(usd(value)),
        "totalNtlPos": to_wire(usd(ntl)),
        "totalRawUsd": signed_wire(usd(raw)),
        "totalMarginUsed": to_wire(usd(margin_total)),
    }
    return {
        "marginSummary": summary,
        "crossMarginSummary": dict(summary),
        "crossMaintenanceMarginUsed": to_wire(usd(cross_margin / 2)),
        "withdrawable": to_wire(usd(max(value - margin_total, Decimal(0)))),
        "assetPositions": positions,
        "time": time_ms,
    }


def active_asset_data(
    user: str, market: Market, leverage: Leverage, position: Position | None, free: Decimal
) -> dict[str, Any]:
    """The ``activeAssetData`` answer (TS-SDK activeAssetData.ts): ``availableToTrade`` is the dex's
    free margin for a buy and a sell, ``maxTradeSzs`` what it buys at the mark and this leverage, plus
    the size that would only close the position."""
    szi = position.szi if position is not None else Decimal(0)
    raw_usd = position.margin - szi * position.entry_px if position is not None else Decimal(0)
    sizes = []
    for is_buy in (True, False):
        opening = round_size(free * leverage.value / market.mark, market.spec.sz_decimals)
        closing = abs(szi) if szi != 0 and (szi < 0) == is_buy else Decimal(0)
        sizes.append(to_wire(opening + closing))
    available = to_wire(usd(free).quantize(Decimal("0.01"), rounding=ROUND_DOWN))
    return {
        "user": user,
        "coin": market.spec.name,
        "leverage": leverage.to_wire(raw_usd),
        "maxTradeSzs": sizes,
        "availableToTrade": [available, available],
        "markPx": to_wire(market.mark),
    }


def order_wire(record: OrderRecord) -> dict[str, Any]:
    """The ``order`` object of orderUpdates / openOrders."""
    out: dict[str, Any] = {
        "coin": record.coin,
        "side": "B" if record.is_buy else "A",
        "limitPx": to_wire(record.limit_px),
        "sz": to_wire(record.sz),
        "oid": record.oid,
        "timestamp": record.timestamp,
        "origSz": to_wire(record.orig_sz),
    }
    if record.cloid is not None:
        out["cloid"] = record.cloid
    return out


def order_update(record: OrderRecord) -> dict[str, Any]:
    """One element of the orderUpdates array."""
    return {"order": order_wire(record), "status": record.status, "statusTimestamp": record.status_timestamp}


def order_status(record: OrderRecord | None) -> dict[str, Any]:
    """The ``orderStatus`` info reply."""
    if record is None:
        return {"status": "unknownOid"}
    order = order_wire(record)
    order.update(
        {
            "triggerCondition": "N/A",
            "isTrigger": False,
            "triggerPx": "0",
            "children": [],
            "isPositionTpsl": False,
            "reduceOnly": record.reduce_only,
            "orderType": "Limit",
            "tif": record.tif,
        }
    )
    return {
        "status": "order",
        "order": {"order": order, "status": record.status, "statusTimestamp": record.status_timestamp},
    }

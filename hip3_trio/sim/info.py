"""Info requests answered over ``post`` (type "info"): metadata, account state, orders, fills, books.

Replies have the venue's shape ``{"type": <request type>, "data": ...}``. A request the venue could not
deserialise gets the transport-level error string instead.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from . import views
from .budget import RequestBudget
from .exchange import DESERIALIZE_ERROR, Exchange, Reply
from .fees import user_fees
from .numbers import to_wire

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_CLOID = re.compile(r"^0x[0-9a-fA-F]{32}$")


class _BadRequest(ValueError):
    pass


def _user(payload: dict[str, Any]) -> str:
    user = payload.get("user")
    if not isinstance(user, str) or not _ADDRESS.match(user):
        raise _BadRequest("user")
    return user.lower()


def _dex(ex: Exchange, payload: dict[str, Any]) -> str:
    dex = payload.get("dex") or ""
    if not isinstance(dex, str) or dex not in ex.dex_names():
        raise _BadRequest("dex")
    return dex


def handle_info(ex: Exchange, payload: object) -> Reply:
    """Answer one info request; returns ("info", {"type", "data"}) or ("error", message)."""
    if not isinstance(payload, dict):
        return "error", DESERIALIZE_ERROR
    kind = payload.get("type")
    ex.refill()  # books show what has come back since the last action (impact)
    try:
        data = _answer(ex, kind, payload)
    except _BadRequest:
        return "error", DESERIALIZE_ERROR
    return "info", {"type": kind, "data": data}


def recorded_key(request: dict[str, Any]) -> str:
    """The key a recorded answer is served under: the request without its user (any account asks)."""
    kept = {k: v for k, v in request.items() if k != "user" and not (k == "dex" and not v)}
    return json.dumps(kept, sort_keys=True, default=str)


def _answer(ex: Exchange, kind: object, payload: dict[str, Any]) -> Any:
    if ex.recorded_info and (recorded := recorded_key(payload)) in ex.recorded_info:
        return ex.recorded_info[recorded]
    now = ex.clock.now_ms()
    if kind == "perpDexs":
        site = ex.config.fee_scale_published_in
        return views.perp_dexs(ex.dexes, ex.config.deployer_fee_scales if site != "meta" else None)
    if kind == "meta":
        return _meta(ex, _dex(ex, payload))
    if kind == "metaAndAssetCtxs":
        dex = _dex(ex, payload)
        return [_meta(ex, dex), [views.asset_ctx(m) for m in ex.markets_of(dex)]]
    if kind == "allMids":
        dex = _dex(ex, payload)
        return {m.spec.name: to_wire(mid) for m in ex.markets_of(dex) if (mid := m.mid()) is not None}
    if kind == "l2Book":
        coin = payload.get("coin")
        if not isinstance(coin, str) or coin not in ex.markets:
            raise _BadRequest("coin")
        return views.l2_data(ex.markets[coin], now)
    if kind == "clearinghouseState":
        user, dex = _user(payload), _dex(ex, payload)
        empty = ex.faults.take("empty_clearinghouse_once")
        if ex.faults.empty_clearinghouse_dex == dex:
            ex.faults.empty_clearinghouse_dex = None
            empty = True
        return ex.clearinghouse_state(user, dex, empty=empty)
    if kind in ("openOrders", "frontendOpenOrders"):
        user, dex = _user(payload), _dex(ex, payload)
        return [views.order_wire(r) for r in ex.open_orders(user, dex)]
    if kind == "orderStatus":
        user = _user(payload)
        ref = payload.get("oid")
        if isinstance(ref, int) and not isinstance(ref, bool):
            record = ex.orders.get(ref)
        elif isinstance(ref, str) and _CLOID.match(ref):
            oid = ex.cloids.get((user, ref.lower()))
            record = ex.orders.get(oid) if oid is not None else None
        else:
            raise _BadRequest("oid")
        if record is not None and record.user != user:
            record = None
        return views.order_status(record)
    if kind == "userFills":
        user = _user(payload)
        account = ex.accounts.users.get(user)
        fills = account.recent_fills(ex.config.fills_snapshot_limit) if account else []
        return [f.to_wire() for f in reversed(fills)]
    if kind == "activeAssetData":
        user = _user(payload)
        coin = payload.get("coin")
        if not isinstance(coin, str) or coin not in ex.markets:
            raise _BadRequest("coin")
        return ex.active_asset_data(user, ex.markets[coin])
    if kind == "userFees":
        account = ex.accounts.users.get(_user(payload))
        if account is None:
            return user_fees(ex.accounts.fee_tier, Decimal(0), Decimal(0), now)
        return user_fees(account.fee_tier, account.taker_volume, account.maker_volume, now)
    if kind == "userRateLimit":
        account = ex.accounts.users.get(_user(payload))
        budget = account.budget if account is not None else RequestBudget(base=ex.accounts.budget.base)
        return budget.to_wire()
    if kind == "userRole":
        return _user_role(ex, _user(payload))
    if kind == "extraAgents":
        return ex.accounts.extra_agents(_user(payload))
    raise _BadRequest("type")


def _user_role(ex: Exchange, address: str) -> dict[str, Any]:
    """The ``userRole`` answer (docs:info-endpoint "Query a user's role", TS-SDK userRole.ts): ``missing``,
    ``user``, ``vault``, or ``agent`` with its master in ``data.user``. The simulator's vaults stand for
    vaults and sub-accounts alike and answer ``vault`` (the venue answers ``subAccount`` with
    ``data.master`` for a sub-account)."""
    accounts = ex.accounts
    if address in accounts.vaults:
        return {"role": "vault"}
    if address in accounts.users:
        return {"role": "user"}
    master = accounts.agents.get(address)
    if master is not None:
        return {"role": "agent", "data": {"user": master}}
    return {"role": "missing"}


def _meta(ex: Exchange, dex: str) -> dict[str, Any]:
    site = ex.config.fee_scale_published_in
    return views.meta(
        [s for s in ex.specs if s.dex == dex],
        collateral_token=ex.dex_spec(dex).collateral_token,
        growth_mode=frozenset(ex.config.growth_mode_markets),
        fee_scale=ex.fee_scale(dex) if site != "perpDexs" else None,
    )

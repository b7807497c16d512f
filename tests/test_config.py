"""Config: safe defaults, strict structuring, every problem named by key path, no keys, mainnet opt-in."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from hip3_trio.config import (
    DEFAULT_STATE_DIR,
    KEY_ENV_VAR,
    SIM_MARKETS,
    Config,
    ConfigError,
    MarketConfig,
    load_config,
    parse_config,
    resolve_alerts,
    resolve_state_dir,
)
from hip3_trio.execution.executor import ExecutorConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "config.example.toml"
ACCOUNT = "0x1111111111111111111111111111111111111111"
FAKE_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


def problems_of(text: str, env: str = "sim") -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env)
    return info.value.problems


# --- defaults ---------------------------------------------------------------------------------------


def test_sim_runs_without_a_config_file_on_safe_defaults() -> None:
    config = load_config(None, "sim")
    assert config.coins == SIM_MARKETS
    assert not config.allow_mainnet
    assert config.account_address is None and config.key_file is None
    d = config.detector
    assert (d.taker_fee_bps, d.alpha, d.min_notional_usd) == (None, Decimal("0.05"), Decimal(10))
    assert (d.stale_oracle_s, d.stale_book_s) == (8.0, 2.0)
    assert config.limits.max_position_per_market_usd == Decimal(50)
    assert config.limits.max_position_total_usd == Decimal(100)
    t = config.time_stop
    assert (t.hold_s, t.flatten_slippage_bps, t.flatten_fail_after_s, t.flatten_on_exit) == (
        30.0,
        Decimal(50),
        60.0,
        True,
    )
    r = config.risk
    assert (r.max_loss_usd, r.max_consecutive_losses, r.max_flatten_failures) == (Decimal(20), 5, 3)
    assert (r.max_rejects_per_hour, r.slippage_bps_limit, r.slippage_strikes) == (10, Decimal(50), 3)
    b = config.batch
    assert (b.max_batch, b.cancel_capacity, b.reduce_only_capacity, b.new_order_capacity) == (
        50,
        200,
        500,
        1000,
    )
    assert (b.inflight_limit, b.inflight_watermark, b.post_timeout_s) == (100, 80, 5.0)
    c = config.connection
    assert (c.ping_after_idle_s, c.pong_timeout_s, c.backoff_initial_s, c.backoff_max_s) == (
        50.0,
        10.0,
        1.0,
        60.0,
    )
    assert config.paths.state_dir is None


def test_sim_markets_exist_in_the_simulator() -> None:
    from hip3_trio.sim.markets import DEFAULT_DEXES, build_specs

    names = {spec.name for spec in build_specs(DEFAULT_DEXES)}
    assert set(SIM_MARKETS) <= names


def test_key_env_var_matches_the_key_loader() -> None:
    from hip3_trio.wire.keys import ENV_VAR

    assert KEY_ENV_VAR == ENV_VAR


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert load_config(path, "sim") == load_config(None, "sim")


@pytest.mark.parametrize("env", ["testnet", "mainnet"])
def test_real_venues_need_a_config_file(env: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env)
    text = str(info.value)
    assert f"account_address: required for --env {env}" in text
    assert f"markets: at least one market is required for --env {env}" in text


def test_unknown_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="env: must be one of sim, testnet, mainnet, got 'prod'"):
        load_config(None, "prod")


# --- the example ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["sim", "testnet"])
def test_example_config_loads(env: str) -> None:
    config = load_config(EXAMPLE, env)
    assert config.account_address == ACCOUNT
    assert config.coins == ("xyz:COIN", "xyz:NVDA")
    assert config.min_edge_bps_by_market == {"xyz:NVDA": Decimal("4.5")}


def test_example_config_documents_the_defaults() -> None:
    config = load_config(EXAMPLE, "testnet")
    defaults = Config()
    for section in ("detector", "limits", "time_stop", "risk", "batch", "connection", "alerts", "paths"):
        assert getattr(config, section) == getattr(defaults, section), section


def test_example_config_is_refused_on_mainnet_until_opted_in(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allow_mainnet: trading on mainnet needs an explicit opt-in"):
        load_config(EXAMPLE, "mainnet")
    opted_in = tmp_path / "mainnet.toml"
    text = EXAMPLE.read_text()
    assert "allow_mainnet = false" in text
    opted_in.write_text(text.replace("allow_mainnet = false", "allow_mainnet = true"))
    assert load_config(opted_in, "mainnet").allow_mainnet


def test_a_dry_run_observes_mainnet_without_the_opt_in() -> None:
    """A dry run sends no order and signs nothing: observing (and recording) mainnet needs no opt-in."""
    config = load_config(EXAMPLE, "mainnet", dry_run=True)
    assert not config.allow_mainnet and config.markets


# --- invalid values ---------------------------------------------------------------------------------

INVALID = [
    ("[limits]\nmax_position_per_market_usd = -5", "limits.max_position_per_market_usd: must be > 0, got -5"),
    ("[limits]\nmax_position_total_usd = 0", "limits.max_position_total_usd: must be > 0, got 0"),
    ("[limits]\norder_rate_per_s = -1", "limits.order_rate_per_s: must be > 0, got -1.0"),
    ("[limits]\norder_burst = 0", "limits.order_burst: must be >= 1, got 0"),
    ("[limits]\norder_burst = 2.5", "limits.order_burst: expected an integer, got 2.5"),
    ("[detector]\nalpha = 0", "detector.alpha: must be > 0, got 0"),
    ("[detector]\nalpha = 1.5", "detector.alpha: must be <= 1, got 1.5"),
    ("[detector]\ntaker_fee_bps = -1", "detector.taker_fee_bps: must be >= 0, got -1"),
    ("[detector]\nslippage_bps = true", "detector.slippage_bps: expected a number, got true"),
    ("[detector]\nmin_edge_bps = nan", "detector.min_edge_bps: expected a finite number, got NaN"),
    ("[detector]\nmax_notional_usd = 'abc'", "detector.max_notional_usd: expected a number, got 'abc'"),
    ("[detector]\nstale_oracle_s = 0", "detector.stale_oracle_s: must be > 0, got 0.0"),
    ("[detector]\nstale_book_s = '2'", "detector.stale_book_s: expected a number, got '2'"),
    ("[detector]\ncooldown_s = -1", "detector.cooldown_s: must be >= 0, got -1.0"),
    ("[detector]\nmin_notional_usd = 0", "detector.min_notional_usd: must be > 0, got 0"),
    ("[time_stop]\nhold_s = 0", "time_stop.hold_s: must be > 0, got 0.0"),
    ("[time_stop]\nflatten_slippage_bps = 0", "time_stop.flatten_slippage_bps: must be > 0, got 0"),
    ("[time_stop]\nflatten_fail_after_s = -3", "time_stop.flatten_fail_after_s: must be > 0, got -3.0"),
    ("[time_stop]\nflatten_on_exit = 'yes'", "time_stop.flatten_on_exit: expected true or false, got 'yes'"),
    ("[time_stop]\nflatten_on_exit = 1", "time_stop.flatten_on_exit: expected true or false, got 1"),
    ("[risk]\nmax_loss_usd = 0", "risk.max_loss_usd: must be > 0, got 0"),
    ("[risk]\nmax_consecutive_losses = 0", "risk.max_consecutive_losses: must be >= 1, got 0"),
    ("[risk]\nmax_flatten_failures = -1", "risk.max_flatten_failures: must be >= 0, got -1"),
    ("[risk]\nmax_rejects_per_hour = 1.0", "risk.max_rejects_per_hour: expected an integer, got 1.0"),
    ("[risk]\nslippage_bps_limit = -50", "risk.slippage_bps_limit: must be > 0, got -50"),
    ("[risk]\nslippage_strikes = 0", "risk.slippage_strikes: must be >= 1, got 0"),
    ("[batch]\ninterval_ms = -1", "batch.interval_ms: must be >= 0, got -1"),
    ("[batch]\nmax_batch = 0", "batch.max_batch: must be >= 1, got 0"),
    ("[batch]\nnew_order_capacity = 0", "batch.new_order_capacity: must be >= 1, got 0"),
    (
        "[batch]\ninflight_limit = 101",
        "batch.inflight_limit: must be <= 100 (the venue's limit per connection)",
    ),
    ("[batch]\npost_timeout_s = 0", "batch.post_timeout_s: must be > 0, got 0.0"),
    ("[connection]\nping_after_idle_s = 60", "connection.ping_after_idle_s: must be < 60.0"),
    ("[connection]\npong_timeout_s = -1", "connection.pong_timeout_s: must be > 0, got -1.0"),
    ("[connection]\nmd_stall_s = 0", "connection.md_stall_s: must be > 0, got 0.0"),
    ("[connection]\nbackoff_initial_s = 0", "connection.backoff_initial_s: must be > 0, got 0.0"),
    ("[connection]\nws_url = 'http://example.org'", "connection.ws_url: must be a ws:// or wss:// URL"),
    (
        "[alerts]\nwebhook_url = 'ftp://hooks.example.org/T0/secret'",
        "alerts.webhook_url: must be an http:// or https:// URL with a host (value not shown)",
    ),
    ("[alerts]\nwebhook_url = 'https:///no-host'", "alerts.webhook_url: must be an http:// or https://"),
    ("[alerts]\nqueue_size = 0", "alerts.queue_size: must be >= 1, got 0"),
    ("[alerts]\nretries = -1", "alerts.retries: must be >= 0, got -1"),
    ("[alerts]\ntimeout_s = 0", "alerts.timeout_s: must be > 0, got 0.0"),
    ("[alerts]\nmax_reconnects_per_10min = 2.5", "alerts.max_reconnects_per_10min: expected an integer"),
    ("[alerts]\nwebhook = 'https://x.org'", "alerts: unknown key 'webhook' (did you mean 'webhook_url'?)"),
    ("[paths]\nstate_dir = ''", "paths.state_dir: expected a non-empty path string, got ''"),
    ("account_address = '0x12'", "account_address: must be a 0x-prefixed 40-hex-digit address, got '0x12'"),
    ("signer_address = 5", "signer_address: expected a string, got 5"),
    ("vault_address = 'vault'", "vault_address: must be a 0x-prefixed 40-hex-digit address, got 'vault'"),
    ("allow_mainnet = 'true'", "allow_mainnet: expected true or false, got 'true'"),
    ("markets = ['COIN']", "markets[0].coin: must be a HIP-3 market in 'dex:COIN' form"),
    ("markets = ['xyz:COIN', 'xyz COIN']", "markets[1].coin: must be a HIP-3 market in 'dex:COIN' form"),
    ("markets = [{coin = 'xyz:COIN', min_edge_bps = -1}]", "markets[0].min_edge_bps: must be >= 0, got -1"),
    ("markets = [{min_edge_bps = 1}]", "markets[0].coin: required key missing"),
    ("markets = [5]", "markets[0]: expected a 'dex:COIN' string or a table, got 5"),
    ("markets = 'xyz:COIN'", "markets: expected an array, got 'xyz:COIN'"),
    ("markets = ['xyz:COIN', 'xyz:COIN']", "markets: 'xyz:COIN' is listed more than once"),
    ("detector = 5", "detector: expected a table, got 5"),
    # Cross-field checks name the section (or the two full paths at the top level).
    (
        "[limits]\nmax_position_per_market_usd = 200",
        "limits: max_position_per_market_usd (200) must not exceed max_position_total_usd (100)",
    ),
    ("[batch]\ninflight_limit = 50", "batch: inflight_watermark (80) must not exceed inflight_limit (50)"),
    (
        "[detector]\nliquidity_floor_usd = 6000",
        "detector: liquidity_full_usd (5000) must be above liquidity_floor_usd (6000)",
    ),
    (
        "[connection]\nbackoff_initial_s = 90",
        "connection: backoff_initial_s (90.0) must not exceed backoff_max_s (60.0)",
    ),
    (
        "[detector]\nmax_notional_usd = 60",
        "detector.max_notional_usd (60) must not exceed limits.max_position_per_market_usd (50)",
    ),
    ("[detector\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "expected"), INVALID, ids=[e.split(":")[0] for _, e in INVALID])
def test_invalid_value_names_its_key_path_and_reason(text: str, expected: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_every_problem_is_reported_at_once() -> None:
    text = """
        account_address = "nope"
        markets = ["xyz:COIN", "bad"]
        [limits]
        max_position_per_market_usd = -5
        [batch]
        max_batch = 0
        [risk]
        slippage_strikes = "3"
    """
    with pytest.raises(ConfigError) as info:
        parse_config(text, "testnet", source="cfg.toml")
    error = info.value
    paths = sorted(p.split(":")[0] for p in error.problems)
    assert paths == [
        "account_address",
        "batch.max_batch",
        "limits.max_position_per_market_usd",
        "markets[1].coin",
        "risk.slippage_strikes",
    ]
    message = str(error)
    assert message.startswith("invalid configuration (cfg.toml), 5 problems:")
    assert "limits.max_position_per_market_usd: must be > 0, got -5" in message


def test_the_config_classes_validate_when_built_in_code_too() -> None:
    with pytest.raises(ValueError, match="max_position_per_market_usd: must be > 0, got -5"):
        ExecutorConfig(max_position_per_market_usd=Decimal(-5))
    with pytest.raises(ValueError, match="must be a HIP-3 market"):
        MarketConfig(coin="COIN")


def test_missing_file_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", "sim")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(binary, "sim")


# --- unknown keys -----------------------------------------------------------------------------------


def test_unknown_key_in_a_section_is_refused_with_a_suggestion() -> None:
    (problem,) = problems_of("[limits]\nmax_positon_total_usd = 10")
    assert problem.startswith(
        "limits: unknown key 'max_positon_total_usd' (did you mean 'max_position_total_usd'?)"
    )


def test_unknown_top_level_key_and_section_are_refused() -> None:
    problems = problems_of("alow_mainnet = true\n[limit]\nmax_position_total_usd = 10")
    assert len(problems) == 1
    assert (
        "unknown keys 'alow_mainnet' (did you mean 'allow_mainnet'?), 'limit' (did you mean 'limits'?)"
        in (problems[0])
    )


def test_unknown_key_in_a_market_table_is_refused() -> None:
    (problem,) = problems_of("markets = [{coin = 'xyz:COIN', min_edge = 3}]")
    assert problem.startswith("markets[0]: unknown key 'min_edge' (did you mean 'min_edge_bps'?)")


# --- keys are never in config -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (f"private_key = '{FAKE_KEY}'", "private_key"),
        ("secret = 'hunter2'", "secret"),
        ("key = 'abc'", "key"),
        ("[connection]\napi_key = 'abc'", "connection.api_key"),
        ("[account]\nsigning-key = 'abc'", "account.signing-key"),
        ("mnemonic = 'word word'", "mnemonic"),
        ("markets = [{coin = 'xyz:COIN', privateKey = 'abc'}]", "markets[0].privateKey"),
    ],
)
def test_key_like_field_is_refused(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "sim")
    message = str(info.value)
    assert f"{path}: key-like field refused" in message
    assert KEY_ENV_VAR in message and "key_file" in message
    assert FAKE_KEY not in message and "hunter2" not in message


@pytest.mark.parametrize("value", [FAKE_KEY, "0x" + FAKE_KEY, FAKE_KEY.upper()])
def test_a_value_that_looks_like_a_key_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"account_address = '{value}'", "sim")
    message = str(info.value)
    assert "account_address: value looks like a private key (not shown)" in message
    assert KEY_ENV_VAR in message
    assert FAKE_KEY.lower() not in message.lower()


def test_key_file_path_is_allowed() -> None:
    config = parse_config("key_file = '/etc/hip3/key.hex'", "sim")
    assert config.key_file == Path("/etc/hip3/key.hex")


# --- environments -----------------------------------------------------------------------------------


def test_mainnet_requires_the_opt_in() -> None:
    base = f"account_address = '{ACCOUNT}'\nmarkets = ['xyz:COIN']\n"
    (problem,) = problems_of(base, "mainnet")
    assert problem.startswith("allow_mainnet:")
    assert parse_config(base + "allow_mainnet = true", "mainnet").allow_mainnet
    assert parse_config(base, "testnet").coins == ("xyz:COIN",)


def test_sim_keeps_configured_markets() -> None:
    config = parse_config("markets = ['abc:TSLA']", "sim")
    assert config.coins == ("abc:TSLA",)


# --- exact decimals ---------------------------------------------------------------------------------


def test_money_is_parsed_exactly_as_decimal() -> None:
    config = parse_config(
        """
        markets = [{coin = "xyz:COIN", min_edge_bps = 0.3}]
        [detector]
        alpha = 0.1
        taker_fee_bps = "4.25"
        max_notional_usd = 20
        slippage_bps = 0.123456789012345678901
        [limits]
        max_position_per_market_usd = 1_000.10
        max_position_total_usd = 2e3
        """,
        "sim",
    )
    d = config.detector
    assert type(d.alpha) is Decimal and str(d.alpha) == "0.1"
    assert d.alpha == Decimal("0.1") and d.alpha * 3 == Decimal("0.3")  # no binary float residue
    assert d.taker_fee_bps == Decimal("4.25")
    assert type(d.max_notional_usd) is Decimal and d.max_notional_usd == Decimal(20)
    assert d.slippage_bps == Decimal("0.123456789012345678901")  # more digits than a float holds
    assert config.limits.max_position_per_market_usd == Decimal("1000.10")
    assert config.limits.max_position_total_usd == Decimal(2000)
    assert config.markets[0].min_edge_bps == Decimal("0.3")


def test_durations_accept_integers_and_are_floats() -> None:
    config = parse_config("[time_stop]\nhold_s = 45\n[connection]\npong_timeout_s = 2.5", "sim")
    assert config.time_stop.hold_s == 45.0 and type(config.time_stop.hold_s) is float
    assert config.connection.pong_timeout_s == 2.5


def test_config_is_frozen() -> None:
    config = load_config(None, "sim")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.allow_mainnet = True  # type: ignore[misc]


# --- state dir --------------------------------------------------------------------------------------


def test_state_dir_precedence() -> None:
    default = load_config(None, "sim")
    configured = parse_config("[paths]\nstate_dir = '/srv/hip3'", "sim")
    env = {"HIP3_STATE_DIR": "/var/lib/hip3"}
    assert resolve_state_dir(configured, "/cli", env) == Path("/cli")
    assert resolve_state_dir(configured, None, env) == Path("/srv/hip3")
    assert resolve_state_dir(default, None, env) == Path("/var/lib/hip3")
    assert resolve_state_dir(default, None, {}) == DEFAULT_STATE_DIR


# --- alerts -----------------------------------------------------------------------------------------


def test_alerts_are_off_by_default_and_the_environment_wins_over_the_file() -> None:
    default = load_config(None, "sim")
    assert default.alerts.webhook_url is None and not default.alerts.enabled
    assert resolve_alerts(default, {}).webhook_url is None
    configured = parse_config("[alerts]\nwebhook_url = 'https://file.example.org/hook'", "sim")
    assert resolve_alerts(configured, {}).webhook_url == "https://file.example.org/hook"
    assert resolve_alerts(configured, {"HIP3_ALERT_WEBHOOK": "  "}).webhook_url == (
        "https://file.example.org/hook"
    )  # empty = unset
    env = {"HIP3_ALERT_WEBHOOK": "http://127.0.0.1:9/env"}
    assert resolve_alerts(configured, env).webhook_url == "http://127.0.0.1:9/env"
    assert resolve_alerts(default, env).enabled


def test_a_bad_webhook_in_the_environment_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_alerts(load_config(None, "sim"), {"HIP3_ALERT_WEBHOOK": "hooks.example.org/T0/s3cret"})
    assert info.value.problems == (
        "HIP3_ALERT_WEBHOOK: must be an http:// or https:// URL with a host (value not shown)",
    )
    assert "s3cret" not in str(info.value)


def test_the_verdict_thresholds_come_from_the_file_with_the_plans_defaults() -> None:
    """Issue 16: the verdict's thresholds live in config (`[verdict]`), defaults as the plan says."""
    default = parse_config("", "sim").verdict
    assert (default.review_trades, default.observation_trades, default.go_trades) == (10, 50, 100)
    assert (default.min_fill_rate, default.min_flatten_success, default.confidence) == (0.80, 0.95, 0.95)
    assert parse_config("[verdict]\ngo_trades = 200\n", "sim").verdict.go_trades == 200
    with pytest.raises(ConfigError, match=r"verdict\.confidence: must be in \(0, 1\), got 2\.0"):
        parse_config("[verdict]\nconfidence = 2\n", "sim")

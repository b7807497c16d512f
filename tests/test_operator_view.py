"""What an operator reads: the status line spells its fields, an orderly stop logs no reconnect-looking
warning (a real loss still does), and the metrics an alerting rule needs."""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hip3_trio.engine import Engine, EngineSettings
from hip3_trio.execution.nonce import NonceManager
from hip3_trio.execution.time_stop import TimeStopConfig
from hip3_trio.journal import JournalSink
from hip3_trio.metrics import registry_for
from hip3_trio.recording.recorder import Recorder
from hip3_trio.risk.hard_stop import HardStop
from hip3_trio.risk.monitor import RiskConfig
from tests.engine_rig import MARKETS, Rig, quiet_settings, run_rig

STATUS = re.compile(
    r"\[ *\d+s\]( DRY-RUN)? (?P<state>READY|SYNCING \(.*\)|DISCONNECTED|HARD STOP \(.*\): no new entries)"
    r" \| inflight \d+, queued \d+ \| positions (?P<positions>none|.+)"
    r" \| pnl realised -?\d+\.\d\d unrealised -?\d+\.\d\d"
    r" \| signals \d+, orders \d+, fills \d+, rejects \d+, trades \d+"
    r" \| connects \d+, disconnects \d+"
)


async def test_the_status_line_spells_its_fields(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    lines: list[str] = []

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        lines.append(rig.engine.status_line(12.0))
        rig.submit(rig.entry_signal(MARKETS[0]))
        await rig.wait_for(lambda: bool(rig.positions()))
        lines.append(rig.engine.status_line(13.0))
        rig.stop.set()

    hold = lambda user: quiet_settings(user, time_stop=TimeStopConfig(hold_s=300))  # noqa: E731
    await run_rig(tmp_path, scenario, settings=hold)
    flat, held = (STATUS.fullmatch(line) for line in lines)
    assert flat is not None and held is not None, lines
    assert lines[0] == (
        "[    12s] READY | inflight 0, queued 0 | positions none | pnl realised 0.00 unrealised 0.00 | "
        "signals 0, orders 0, fills 0, rejects 0, trades 0 | connects 1, disconnects 0"
    )
    assert re.fullmatch(r"xyz:COIN \+\d+(\.\d+)?", held["positions"]), lines[1]


async def test_an_orderly_stop_logs_no_reconnect_warning_but_a_lost_connection_does(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        rig.sim.faults.close_after_frames = 1  # the next frame the venue sends: the connection drops
        await rig.wait_for(lambda: rig.engine.statistics().link.disconnects == 1)
        await rig.wait_ready()
        await trio.sleep(2)
        rig.stop.set()

    caplog.set_level(logging.INFO, logger="hip3_trio")
    rig = await run_rig(tmp_path, scenario)
    assert rig.engine.statistics().link.disconnects == 2  # the loss, then the orderly stop's close
    readiness = [r for r in caplog.records if r.name == "hip3_trio.position.readiness"]
    warnings = [r.getMessage() for r in readiness if r.levelno >= logging.WARNING]
    assert warnings == ["not ready: the connection ended; trading waits for a new connection and its sync"]
    assert "connection closed for the orderly stop" in [r.getMessage() for r in readiness]


# --- metrics -------------------------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(engine: Engine) -> Samples:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry_for(engine)).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_for_journal_health_risk_headroom_market_data_pnl_and_peak_inflight(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    scraped: list[Samples] = []

    async def scenario(rig: Rig) -> None:
        await rig.wait_ready()
        scraped.append(scrape(rig.engine))  # before any order
        rig.submit(rig.entry_signal(MARKETS[0]))
        await rig.wait_for(lambda: rig.engine.link.inflight > 0)
        scraped.append(scrape(rig.engine))  # the entry in flight
        await rig.wait_for(lambda: rig.engine.statistics().core.trades == 1)
        await trio.sleep(1)
        scraped.append(scrape(rig.engine))  # after the round trip (held 5 s)
        rig.stop.set()

    risk = RiskConfig(max_loss_usd=Decimal(7), max_consecutive_losses=4, max_flatten_failures=2)
    settings = lambda user: quiet_settings(user, time_stop=TimeStopConfig(hold_s=5), risk=risk)  # noqa: E731
    rig = await run_rig(tmp_path, scenario, settings=settings)
    before, inflight, after = scraped
    monitor = rig.engine.core.monitor

    # Journal health: written grows, nothing dropped or failed.
    assert (
        0
        < before[("hip3_journal_records_written_total", ())]
        < after[("hip3_journal_records_written_total", ())]
    )
    assert after[("hip3_journal_records_dropped_total", ())] == 0
    assert after[("hip3_journal_records_failed_total", ())] == 0
    # Risk headroom: the monitor's counters and the configured limits.
    assert before[("hip3_risk_loss_budget_left_usd", ())] == 7
    assert after[("hip3_risk_loss_budget_left_usd", ())] == pytest.approx(float(7 + monitor.realized_pnl))
    assert after[("hip3_risk_loss_streak", ())] == monitor.consecutive_losses
    assert after[("hip3_risk_flatten_failures", ())] == 0
    assert after[("hip3_risk_rejects_last_hour", ())] == 0
    assert {k[1][0][1]: v for k, v in after.items() if k[0] == "hip3_risk_limit"} == {
        "max_loss_usd": 7,
        "max_consecutive_losses": 4,
        "max_flatten_failures": 2,
        "max_rejects_per_hour": 10,
    }
    # Market data age per market: fresh while the simulator streams.
    for market in MARKETS:
        assert 0 <= after[("hip3_market_data_age_seconds", (("market", market),))] < 5
    # PnL per market: the round trip's realised PnL is the first market's; the other has none.
    realized = {m: after[("hip3_market_pnl_usd", (("kind", "realized"), ("market", m)))] for m in MARKETS}
    assert realized == {
        MARKETS[0]: pytest.approx(float(rig.engine.statistics().core.realized_pnl)),
        MARKETS[1]: 0,
    }
    assert realized[MARKETS[0]] != 0
    assert after[("hip3_market_pnl_usd", (("kind", "unrealized"), ("market", MARKETS[0])))] == 0
    # Peak inflight in the current exchange minute, beside the limit.
    assert before[("hip3_inflight_peak_posts", ())] == 0
    assert inflight[("hip3_inflight_peak_posts", ())] >= 1
    assert inflight[("hip3_inflight_limit", ())] == rig.engine.settings.scheduler.inflight_limit
    # The request budget, as the venue link tracks it (read at sync, every action counted).
    requests = rig.engine.core.executor.requests
    assert after[("hip3_requests_remaining", ())] == requests.remaining
    assert after[("hip3_requests_sent_total", ())] == requests.sent >= 2  # the entry and its flatten
    assert after[("hip3_request_reserve", ())] == 500
    assert after[("hip3_request_budget_exhaustions_total", ())] == 0


async def test_market_data_age_is_infinite_before_the_first_bbo(tmp_path: Path) -> None:
    sink, _receive = JournalSink.open()
    engine = Engine(
        EngineSettings(markets=("xyz:COIN",), user="0x" + "1" * 40, dry_run=True),
        signer=None,
        nonces=NonceManager(),
        hard_stop=HardStop.load(tmp_path, 0),
        journal=sink,
    )
    engine.journal_stats.failed = 2  # as the journal task counts them
    got = scrape(engine)
    assert got[("hip3_market_data_age_seconds", (("market", "xyz:COIN"),))] == math.inf
    assert ("hip3_requests_remaining", ()) not in got  # unknown before the first read
    assert got[("hip3_journal_records_failed_total", ())] == 2


def alerting_rules() -> str:
    text = (Path(__file__).parent.parent / "docs" / "operations.md").read_text(encoding="utf-8")
    blocks: list[str] = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (rules,) = [block for block in blocks if "groups:" in block]
    return rules


async def test_the_alerting_rules_read_only_metrics_the_engine_serves(tmp_path: Path) -> None:
    sink, _receive = JournalSink.open()
    engine = Engine(
        EngineSettings(markets=("xyz:COIN",), user="0x" + "1" * 40, dry_run=True),
        signer=None,
        nonces=NonceManager(),
        hard_stop=HardStop.load(tmp_path, 0),
        journal=sink,
    )
    engine.core.executor.requests.on_read(used=100, cap=10_000, sent_at_ask=0)  # as the first sync reads it
    recorder = Recorder(tmp_path / "rec", env="sim", markets=["xyz:COIN"])  # --record: its rule's metrics
    recorder.last_flush_us = 1_700_000_000_000_000
    engine.record_to(recorder)
    served = {name for name, _ in scrape(engine)}
    used = set(re.findall(r"\bhip3_[a-z_]+", alerting_rules()))
    assert used and used <= served, used - served


PROMTOOL_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'hip3_risk_loss_budget_left_usd{job="hip3-trio", instance="a"}'
        values: '20 10 4'
      - series: 'hip3_risk_limit{job="hip3-trio", instance="a", limit="max_loss_usd"}'
        values: '20x2'
      - series: 'hip3_risk_limit{job="hip3-trio", instance="a", limit="max_consecutive_losses"}'
        values: '5x2'
      - series: 'hip3_risk_loss_streak{job="hip3-trio", instance="a"}'
        values: '0 4 5'
      - series: 'hip3_market_pnl_usd{job="hip3-trio", instance="a", market="xyz:COIN", kind="realized"}'
        values: '0 -2 -6'
      - series: 'hip3_market_pnl_usd{job="hip3-trio", instance="a", market="xyz:NVDA", kind="realized"}'
        values: '0 1 1'
      - series: 'hip3_market_data_age_seconds{job="hip3-trio", instance="a", market="xyz:COIN"}'
        values: '1 90 150'
      - series: 'hip3_connected{job="hip3-trio", instance="a"}'
        values: '1x2'
      - series: 'hip3_requests_remaining{job="hip3-trio", instance="a"}'
        values: '9000 1200 900'
      - series: 'hip3_request_reserve{job="hip3-trio", instance="a"}'
        values: '500x2'
    alert_rule_test:
      - eval_time: 1m
        alertname: Hip3LossBudgetLow
        exp_alerts: []
      - eval_time: 2m
        alertname: Hip3LossBudgetLow
        exp_alerts:
          - exp_labels: {severity: warn, job: hip3-trio, instance: a}
            exp_annotations:
              summary: "Loss budget left 4 USD: under a quarter of risk.max_loss_usd"
      - eval_time: 1m
        alertname: Hip3LossStreak
        exp_alerts: []
      - eval_time: 2m
        alertname: Hip3LossStreak
        exp_alerts:
          - exp_labels: {severity: warn, job: hip3-trio, instance: a}
            exp_annotations:
              summary: "5 losing trades in a row: one more latches the hard stop"
      - eval_time: 2m
        alertname: Hip3MarketLosing
        exp_alerts:
          - exp_labels: {severity: warn, job: hip3-trio, instance: a, market: "xyz:COIN", kind: realized}
            exp_annotations:
              summary: "xyz:COIN realised -6 USD since the start: over a quarter of max_loss_usd"
      - eval_time: 1m
        alertname: Hip3RequestBudgetLow
        exp_alerts: []
      - eval_time: 2m
        alertname: Hip3RequestBudgetLow
        exp_alerts:
          - exp_labels: {severity: warn, job: hip3-trio, instance: a}
            exp_annotations:
              summary: "900 requests left: near limits.request_reserve, where new entries stop"
      - eval_time: 2m
        alertname: Hip3MarketDataStale
        exp_alerts:
          - exp_labels: {severity: warn, job: hip3-trio, instance: a, market: "xyz:COIN"}
            exp_annotations:
              summary: "No bbo for xyz:COIN in over a minute while connected"
"""


def test_the_alerting_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    (tmp_path / "rules.yml").write_text(alerting_rules())
    (tmp_path / "rules.test.yml").write_text(PROMTOOL_TESTS)
    checked = subprocess.run(
        [promtool, "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "rules.test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr

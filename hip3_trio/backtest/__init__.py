"""Backtests over recordings: the engine's trading core, a venue stand-in, and parameter grids.

- `source`: a recording's setup (markets, fees) and its market-data frames;
- `venue`: the venue stand-in that executes the core's posts against the recorded books with the
  simulator's realism models (`hip3_trio.sim.realism`);
- `runner`: one run's event loop (recorded frames, executions, the time stop) driving `TradingCore`;
- `grid`: ``--grid SECTION.KEY=V1,V2`` over the configuration and the venue models;
- `summary`: the figures of one run; `command`: ``python -m hip3_trio backtest``.

What it models and what it cannot: docs/backtest.md.
"""

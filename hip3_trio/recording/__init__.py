"""Recording market data as received, and reading it back (replay, backtest)."""

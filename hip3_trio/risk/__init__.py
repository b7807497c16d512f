"""Pre-trade gates, the risk monitor and the persisted hard stop."""

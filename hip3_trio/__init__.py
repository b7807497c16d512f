"""hip3-trio: a Trio execution engine for an oracle-dislocation taker on Hyperliquid HIP-3 perps."""

__version__ = "0.1.0"

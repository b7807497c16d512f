"""A protocol-faithful local Hyperliquid-like exchange for rehearsal and tests."""

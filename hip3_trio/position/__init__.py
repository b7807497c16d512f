"""Positions and orders as the engine knows them; time stop and flatten."""

"""Positions and orders as the engine knows them: the position book, readiness, the journal's entry hints."""

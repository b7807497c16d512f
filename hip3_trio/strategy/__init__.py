"""Signal generation: the oracle-dislocation detector."""

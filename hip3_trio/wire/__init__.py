"""Wire formats: actions, inbound messages, market metadata (asset ids, tick/lot), numbers, signing, keys."""

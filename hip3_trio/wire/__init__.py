"""Wire formats: actions, inbound messages, numbers, signing and keys."""

"""Connection to the venue: session, markets metadata, info requests."""

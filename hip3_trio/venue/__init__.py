"""Connection to the venue: the session, the venue link (session host), info requests."""

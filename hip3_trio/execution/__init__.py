"""The order path's pure state machines: nonces, batching, the post table, the executor and its
gates, the time stop and flatten."""

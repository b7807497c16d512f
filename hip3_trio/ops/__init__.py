"""Operator tools that run beside the engine, never inside it (issue 7, "Operations").

- `hip3_trio.ops.report`: ``python -m hip3_trio report`` — reads the journal read-only and prints the
  micro test's figures per market and overall, with the go/no-go verdict (``--json``, ``--check``,
  ``--plot``), or the testnet checklist (``--checklist testnet``). Its parts: `rows` (the journal rows
  and ``--since``), `figures` (the statistics), `verdict` (the decision and its criteria), `checklist`
  (PLAN.md's T#1..T#10) and `plot` (matplotlib, optional).
- `hip3_trio.ops.hardstop_cmd`: ``python -m hip3_trio hardstop status|clear`` — shows the persisted
  hard-stop latch and lets an operator clear it, journaling who cleared it and when.

Each module exposes ``main(argv, *, out=print) -> int`` and parses its own arguments, so the top-level
CLI only dispatches the remaining argv to it.
"""

"""Proposal strategies: each module's ``propose(ctx)`` returns a candidate prompt (and pool) or None.

A strategy sees only ``ctx.examples`` (the examples side of the split) and the mistakes made on them, never
the validation tasks. It raises ``StrategyError`` with a reason when it cannot produce a candidate for a
reason the reviewer should see (a teacher that is down); None means it has nothing to offer.
"""

from __future__ import annotations

from agent.strategies import definitions, fixed_demos, retrieval, rewrite, weights
from agent.strategies.base import Candidate, Context, Mistake, Strategy, StrategyError

__all__ = ["Candidate", "Context", "Mistake", "Strategy", "StrategyError", "registry"]


def registry() -> dict[str, Strategy]:
    return {
        "weights": weights.propose,
        "retrieval": retrieval.propose,
        "fixed_demos": fixed_demos.propose,
        "definitions": definitions.propose,
        "rewrite": rewrite.propose,
    }

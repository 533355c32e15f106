"""From per-label log-probabilities to decisions: shared by every engine that scores label tries."""

from __future__ import annotations

import torch

from constraints.base import Decision, Query
from constraints.labelset import LabelSet

CONTENT_FREE_BODY = "N/A\n"


def sum_paths(reads: list[torch.Tensor], paths: list[list[tuple[int, int]]], rows: int) -> torch.Tensor:
    """(rows, labels): each label's log-probability, summed over the branch readouts along its trie path."""
    logp = torch.zeros((rows, len(paths)))
    for j, path in enumerate(paths):
        for r, pos in path:
            logp[:, j] += reads[r][:, pos]
    return logp


def decision_from_scores(row: torch.Tensor, label_set: LabelSet, threshold: float) -> Decision:
    """From log P(label) to a decision.

    Single: the most probable label; score = its probability. Multiple: each label on its own, chosen when
    its probability reaches ``threshold`` (so no label twice, and the set size follows the evidence);
    score = the probability mass the chosen set covers (1 - the top probability for an empty set).
    """
    probs = torch.softmax(row, dim=0)
    named = {lab: float(p) for lab, p in zip(label_set.labels, probs, strict=True)}
    if not label_set.multiple:
        best = int(probs.argmax())
        return Decision((label_set.labels[best],), float(probs[best]), named)
    chosen = [j for j in range(len(label_set)) if probs[j] >= threshold]
    if not chosen and not label_set.allow_empty:
        chosen = [int(probs.argmax())]
    score = float(probs[chosen].sum()) if chosen else float(1 - probs.max())
    return Decision(tuple(label_set.labels[j] for j in chosen), min(max(score, 1e-6), 1.0), named)


class LabelDecider:
    """``decide`` for engines that provide ``label_logprobs``, ``calibration``, ``threshold`` and ``_priors``."""

    def _prior(self, query: Query, label_set: LabelSet) -> torch.Tensor:
        """Label log-probabilities on a content-free input, for content-free calibration."""
        key = (query.prefix, label_set.key)
        if key not in self._priors:
            probe = Query(query.prefix, CONTENT_FREE_BODY, query.cue)
            self._priors[key] = self.label_logprobs([probe], label_set)[0]
            while len(self._priors) > 64:
                self._priors.popitem(last=False)
        return self._priors[key]

    def decide(self, queries: list[Query], label_set: LabelSet) -> list[Decision]:
        if not queries:
            return []
        scores = self.label_logprobs(queries, label_set)
        if self.calibration == "content_free":
            priors = torch.stack([self._prior(q, label_set) for q in queries])
            scores = torch.log_softmax(scores - priors, dim=1)
        return [decision_from_scores(row, label_set, self.threshold) for row in scores]

"""Trie scoring against the plain way (a full forward per label), on a tiny real model."""

from __future__ import annotations

import pytest
import torch

from constraints.base import Query
from constraints.decisions import decision_from_scores
from constraints.labelset import LabelSet, LabelSetError
from constraints.local import LocalEngine
from constraints.trie import ChoiceTrie, TokenTrie
from tests.tiny_model import tiny_model

PREFIX = "Classify the customer's request.\nOptions: credit card, debit card, card, loan, cancel card\n\n"
BODIES = ["Text: I want to cancel my credit card please\n", "Text: can I borrow money for a house?\n", "Text: hi\n"]
LABELS = LabelSet(("credit card", "debit card", "card", "loan", "cancel card"))


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    model, tokenizer = tiny_model()
    return LocalEngine(model, tokenizer, "tiny", batch_size=2)


def naive_label_probs(engine: LocalEngine, query: Query, label_set: LabelSet) -> torch.Tensor:
    """Each label as its own full sequence; the constrained distribution renormalised at each branch."""
    context = engine.prefix_ids(query) + engine.body_ids(query)
    end = engine._single_token("\n")
    seqs = [engine.encode(engine.lead + n) + [end] for n in label_set.names]
    out = []
    for seq in seqs:
        with torch.inference_mode():
            logits = engine.model(torch.tensor([context + seq])).logits[0].float()
        total = 0.0
        for k in range(len(seq)):
            allowed = sorted({s[k] for s in seqs if s[:k] == seq[:k] and len(s) > k})
            if len(allowed) > 1:
                lp = logits[len(context) - 1 + k][allowed].log_softmax(-1)
                total += float(lp[allowed.index(seq[k])])
        out.append(total)
    return torch.tensor(out).exp()


def test_trie_scores_equal_full_forward_per_label(engine: LocalEngine) -> None:
    queries = [Query(PREFIX, b, "Label:") for b in BODIES]
    got = engine.label_logprobs(queries, LABELS).exp()
    for i, q in enumerate(queries):
        want = naive_label_probs(engine, q, LABELS)
        assert torch.allclose(got[i], want, atol=1e-4), (i, got[i], want)
    assert torch.allclose(got.sum(dim=1), torch.ones(len(queries)), atol=1e-5)


def test_batched_equals_one_by_one(engine: LocalEngine) -> None:
    queries = [Query(PREFIX, b, "Label:") for b in BODIES]
    together = engine.label_logprobs(queries, LABELS)
    alone = torch.cat([engine.label_logprobs([q], LABELS) for q in queries])
    assert torch.allclose(together, alone, atol=1e-4)


def test_prefix_of_another_label_is_scored_apart(engine: LocalEngine) -> None:
    decision = engine.decide([Query(PREFIX, BODIES[0], "Label:")], LABELS)[0]
    assert set(decision.probs) == set(LABELS.labels)
    assert decision.probs["card"] not in (decision.probs["credit card"], decision.probs["cancel card"])
    assert 0 < decision.score <= 1 and len(decision.labels) == 1 and decision.labels[0] in LABELS.labels


def test_unicode_and_spaces_labels(engine: LocalEngine) -> None:
    labels = LabelSet(("🙂 happy", "грусть", "très bien", "a b c"))
    decisions = engine.decide([Query(PREFIX, b, "Label:") for b in BODIES], labels)
    for d in decisions:
        assert len(d.labels) == 1 and d.labels[0] in labels.labels
        assert abs(sum(d.probs.values()) - 1) < 1e-4


def test_one_label_has_probability_one(engine: LocalEngine) -> None:
    d = engine.decide([Query(PREFIX, BODIES[0], "Label:")], LabelSet(("loan",)))[0]
    assert d.labels == ("loan",) and d.score == pytest.approx(1.0)


def test_compiled_constraints_are_cached(engine: LocalEngine) -> None:
    first = engine.compile(LABELS)
    assert engine.compile(LabelSet(LABELS.labels)) is first


def test_multiple_choice_is_a_set_decided_per_label(engine: LocalEngine) -> None:
    labels = LabelSet(("credit card", "debit card", "loan"), multiple=True, allow_empty=False)
    for d in engine.decide([Query(PREFIX, b, "Labels:") for b in BODIES], labels):
        assert len(d.labels) == len(set(d.labels)) >= 1
        assert set(d.labels) <= set(labels.labels)
        assert all(d.probs[label] >= 0.1 for label in d.labels[1:])  # beyond the forced one, each passed on its own


def test_decision_rules() -> None:
    multi = LabelSet(("a", "b", "c"), multiple=True, allow_empty=True)
    logp = torch.log(torch.tensor([0.6, 0.05, 0.35]))
    d = decision_from_scores(logp, multi, 0.3)
    assert d.labels == ("a", "c") and d.score == pytest.approx(0.95)
    empty = decision_from_scores(logp, multi, 0.7)
    assert empty.labels == () and empty.score == pytest.approx(0.4)
    required = LabelSet(("a", "b", "c"), multiple=True, allow_empty=False)
    assert decision_from_scores(logp, required, 0.7).labels == ("a",)
    single = decision_from_scores(logp, LabelSet(("a", "b", "c")), 0.3)
    assert single.labels == ("a",) and single.score == pytest.approx(0.6)


def test_trie_shares_prefixes_and_reads_out_only_at_branches() -> None:
    trie = ChoiceTrie.build([[1, 2, 9], [1, 3, 9], [1, 9], [4, 9]])
    assert trie.trie.tokens == [1]  # only the branch point "1" is fed; every label's tail decides nothing
    assert sorted(len(r.token_ids) for r in trie.readouts) == [2, 3]  # root {1,4}, after 1 {2,3,9}
    deep = ChoiceTrie.build([[5, 6, 7, 1, 9], [5, 6, 7, 2, 9], [8, 9]])
    assert deep.trie.tokens == [5, 6, 7]  # the shared run up to the branch, not the tails
    with pytest.raises(ValueError):
        TokenTrie().insert([])


def test_duplicate_label_sets_are_refused() -> None:
    with pytest.raises(LabelSetError):
        LabelSet(("a", "a"))
    with pytest.raises(LabelSetError):
        LabelSet(("a", " "))


def test_reference_generation_stays_in_the_label_set(engine: LocalEngine) -> None:
    from constraints.reference import OutlinesLabeler

    labeler = OutlinesLabeler(engine)
    queries = [Query(PREFIX, b, "Label:") for b in BODIES]
    for answer in labeler.label(queries, LABELS):
        assert len(answer) == 1 and answer[0] in LABELS.labels
    multi = LabelSet(("credit card", "debit card", "loan"), multiple=True, allow_empty=True)
    for answer in labeler.label(queries, multi):
        assert len(answer) == len(set(answer)) and set(answer) <= set(multi.labels)
    assert labeler.generator(LABELS) is labeler.generator(LabelSet(LABELS.labels))


def test_parse_set_round_trip() -> None:
    from constraints.reference import parse_set

    labels = LabelSet(("a, b", "a", "c"), multiple=True)
    assert parse_set("a, b, c", labels) == ("a, b", "c")
    assert parse_set("a", labels) == ("a",)
    with pytest.raises(ValueError):
        parse_set("c, a", labels)


def test_chat_template_wraps_the_prompt_and_answers_start_the_assistant_turn() -> None:
    import copy

    model, tokenizer = tiny_model()
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}<bos>user: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    chat = LocalEngine(model, tokenizer, "tiny-chat")
    query = Query(PREFIX, BODIES[0], "")
    assert chat.chat and chat.lead == ""
    assert chat.full_text(query) == "user: " + PREFIX + BODIES[0] + "\nassistant:"
    assert chat.prefix_ids(query)[0] == tokenizer.bos_token_id
    assert chat.prefix_ids(query).count(tokenizer.bos_token_id) == 1
    d = chat.decide([query], LABELS)[0]
    assert d.labels[0] in LABELS.labels and abs(sum(d.probs.values()) - 1) < 1e-4


def test_rows_per_forward_are_bounded_by_batch_tokens(engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    queries = [Query(PREFIX, b * (1 + i % 3), "Label:") for i, b in enumerate(BODIES * 3)]
    widths: list[tuple[int, int]] = []
    score = engine.scorer.score

    def spy(prefix_ids, bodies, trie, readouts):
        widths.append((len(bodies), len(prefix_ids) + max(len(b) for b in bodies) + len(trie)))
        return score(prefix_ids, bodies, trie, readouts)

    monkeypatch.setattr(engine.scorer, "score", spy)
    monkeypatch.setattr(engine, "batch_size", 16)
    wide = engine.label_logprobs(queries, LABELS)
    assert [rows for rows, _ in widths] == [len(queries)]
    budget = 2 * widths[0][1]  # room for two rows of the widest
    monkeypatch.setattr(engine, "batch_tokens", budget)
    widths.clear()
    narrow = engine.label_logprobs(queries, LABELS)
    assert len(widths) > 1 and all(rows * width <= budget or rows == 1 for rows, width in widths)
    assert sum(rows for rows, _ in widths) == len(queries)
    assert torch.allclose(wide, narrow, atol=1e-4)  # same scores, whatever the chunking

"""Tests of research/fusion.py (numpy only). Run: python -m pytest research/test_fusion.py -q"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service import fusion as fu  # noqa: E402


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_single(n=3000, labels=6, w=(6.0, 3.0, 0.0, 0.0, 1.0, 0.0, 0.0), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, labels, fu.F)) * 0.3
    x[..., 2] = rng.random((n, labels)) < 0.2  # some labels without examples
    s = x @ np.array(w)
    p = np.exp(s - s.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    gold = np.array([rng.choice(labels, p=row) for row in p])
    return x, gold, p


def test_label_words():
    assert fu.label_words("CheckAccountBalance") == "check account balance"
    assert fu.label_words("card_arrival") == "card arrival"
    assert fu.label_words("ATMSupport") == "atm support"
    assert fu.label_words("wrong_notworking_notshowing") == "wrong notworking notshowing"
    assert fu.description("GetQuote", "a price for a policy") == "get quote: a price for a policy"
    assert fu.description("GetQuote") == "get quote"
    with pytest.raises(ValueError):
        fu.description("  ")


def test_fit_recovers_known_weights():
    true = np.array([6.0, 3.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    x, gold, _ = synthetic_single(w=true)
    use = ("knowledge", "nearest", "model")
    w = fu.fit(x, gold, prior=fu.Weights(), l2=1e-6, use=use)
    got = w.vector()
    assert w.source == "fitted" and w.annotated == len(x)
    for f, t in zip(fu.FEATURES, true, strict=True):
        if f in use:
            assert abs(got[fu.FEATURES.index(f)] - t) < 0.2 * t + 0.3, (f, got)
        else:
            assert got[fu.FEATURES.index(f)] == 0.0


def test_l2_pulls_towards_prior_with_few_tasks():
    x, gold, _ = synthetic_single(n=20, w=(6.0, 3.0, 0, 0, 1.0, 0, 0))
    prior = fu.Weights(knowledge=1.0, nearest=1.0, model=1.0)
    strong = fu.fit(x, gold, prior=prior, l2=1e4, use=("knowledge", "nearest", "model"))
    v = strong.vector()
    # the direction of the prior is kept (only its scale, the temperature, is fitted) ...
    assert np.allclose(v / v[0], prior.vector(), atol=0.02) and v[0] > 1.5
    # ... unless the scale is pinned too
    pinned = fu.fit(x, gold, prior=prior, l2=1e4, l2_scale=1e4, use=("knowledge", "nearest", "model"))
    assert np.allclose(pinned.vector(), prior.vector(), atol=0.05)
    loose = fu.fit(x, gold, prior=prior, l2=1e-6, use=("knowledge", "nearest", "model"))
    assert not np.allclose(loose.vector() / loose.vector()[0], prior.vector(), atol=0.2)


def test_too_few_annotated_tasks_keep_the_defaults():
    x, gold, _ = synthetic_single(n=5)
    w = fu.fit(x, gold)
    assert w.source == "default" and w.annotated == 5
    assert np.allclose(w.vector(), fu.DEFAULT.vector())
    w = fu.fit(np.zeros((0, 4, fu.F)), np.zeros(0, int))
    assert w.source == "default" and w.annotated == 0


def test_fitted_temperature_calibrates():
    x, gold, _ = synthetic_single(n=4000, seed=1)
    train, test = slice(0, 2000), slice(2000, None)
    use = ("knowledge", "nearest", "model")
    w = fu.fit(x[train], gold[train], prior=fu.Weights(), l2=1e-3, use=use)
    over = w.with_vector(w.vector() * 4)  # the same ranking, four times too confident
    under = w.with_vector(w.vector() * 0.25)

    def ece(weights):
        p = fu.probabilities(x[test], weights)
        best, conf = fu.decide(p)
        return fu.ece(conf, best == gold[test])

    assert ece(w) < 0.04
    assert ece(over) > ece(w) + 0.05
    assert ece(under) > ece(w) + 0.05


def test_ece_values():
    assert fu.ece([1.0, 1.0], [1, 1]) == 0.0
    assert fu.ece([0.9] * 10, [1] * 9 + [0]) == pytest.approx(0.0, abs=1e-9)
    assert fu.ece([0.9] * 10, [0] * 10) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        fu.ece([0.5], [1, 0])


def test_features_labels_without_examples():
    rng = np.random.default_rng(0)
    labels = unit(rng.normal(size=(3, 8)))
    pool = unit(labels[[0, 0, 1]] + 0.1 * rng.normal(size=(3, 8)))  # label 2 has no correction
    tasks = unit(np.stack([labels[2] + 0.05 * rng.normal(size=8), labels[0]]))
    x = fu.features(tasks, labels, pool, [0, 0, 1])
    assert x.shape == (2, 3, fu.F)
    assert np.all(x[:, 2, fu.FEATURES.index("no_examples")] == 1.0)
    assert np.all(x[:, 2, fu.FEATURES.index("nearest")] == 0.0)
    assert np.all(x[:, :2, fu.FEATURES.index("no_examples")] == 0.0)
    # a label without corrections: its centroid is its description
    assert np.allclose(x[:, 2, fu.FEATURES.index("centroid")], x[:, 2, fu.FEATURES.index("knowledge")])
    p = fu.probabilities(x, fu.DEFAULT)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1.0)
    best, _ = fu.decide(p)
    assert best[0] == 2, "a label with no correction still wins on its description"
    assert best[1] == 0
    # no pool at all: every label has no examples, knowledge decides
    x0 = fu.features(tasks, labels)
    assert np.all(x0[..., fu.FEATURES.index("no_examples")] == 1.0)
    assert list(fu.decide(fu.probabilities(x0, fu.DEFAULT))[0]) == [2, 0]


def test_exclude_self_is_leave_one_out():
    rng = np.random.default_rng(2)
    labels = unit(rng.normal(size=(2, 16)))
    pool = unit(rng.normal(size=(6, 16)))
    pool_labels = [0, 0, 0, 1, 1, 1]
    with_self = fu.features(pool, labels, pool, pool_labels)
    loo = fu.features(pool, labels, pool, pool_labels, exclude_self=np.arange(6))
    near = fu.FEATURES.index("nearest")
    own = np.array(pool_labels)
    assert np.allclose(with_self[np.arange(6), own, near], 1.0)
    assert np.all(loo[np.arange(6), own, near] < 0.999)
    # the centroid leaves the task out too: equal to a pool built without it
    cent = fu.FEATURES.index("centroid")
    for i in range(6):
        keep = [j for j in range(6) if j != i]
        ref = fu.features(pool[i : i + 1], labels, pool[keep], [pool_labels[j] for j in keep])
        assert np.allclose(loo[i, :, cent], ref[0, :, cent])
        assert np.allclose(loo[i, :, near], ref[0, :, near])


def test_multilabel_pool_and_empty_rows():
    rng = np.random.default_rng(3)
    labels = unit(rng.normal(size=(3, 8)))
    pool = unit(rng.normal(size=(3, 8)))
    x = fu.features(pool, labels, pool, [[0, 1], [], [2]], exclude_self=np.arange(3))
    ne = fu.FEATURES.index("no_examples")
    assert x[0, 0, ne] == 1.0 and x[0, 2, ne] == 0.0  # task 0 alone carries labels 0 and 1
    hot = fu.multihot([[0, 1], [], [2]], 3)
    assert hot.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError):
        fu.multihot([[3]], 3)


def test_multilabel_fit_threshold_and_decide():
    rng = np.random.default_rng(4)
    n, labels = 1500, 5
    x = rng.normal(size=(n, labels, fu.F)) * 0.5
    z = 4.0 * x[..., 0] + 2.0 * x[..., 1] - 2.0
    y = (rng.random((n, labels)) < 1 / (1 + np.exp(-z))).astype(float)
    w = fu.fit(x, y, multiple=True, prior=fu.Weights(), l2=1e-4, use=("knowledge", "nearest"))
    assert abs(w.knowledge - 4.0) < 0.6 and abs(w.nearest - 2.0) < 0.5 and abs(w.bias + 2.0) < 0.4
    assert 0.2 <= w.threshold <= 0.6
    p = fu.probabilities(x, w, multiple=True)
    chosen, score = fu.decide(p, True, w.threshold)
    assert fu.micro_f1(chosen, y > 0) >= fu.micro_f1(p >= 0.95, y > 0)
    # threshold behaviour: nothing reaches it -> empty set, unless an empty answer is not allowed
    q = np.array([[0.1, 0.2, 0.05], [0.9, 0.6, 0.1]])
    c, s = fu.decide(q, True, 0.5)
    assert c.tolist() == [[False, False, False], [True, True, False]]
    assert s[0] == pytest.approx(0.9 * 0.8 * 0.95)
    c, _ = fu.decide(q, True, 0.5, allow_empty=False)
    assert c[0].tolist() == [False, True, False]
    assert fu.best_threshold(np.array([[0.9, 0.3], [0.35, 0.1]]), np.array([[1, 0], [1, 0]])) == pytest.approx(0.35)


def test_model_feature_length_and_batch_calibration():
    rng = np.random.default_rng(5)
    n, labels = 400, 4
    gold = rng.integers(0, labels, n)
    clean = rng.normal(size=(n, labels))
    clean[np.arange(n), gold] += 2.0
    biased = clean + np.array([5.0, 0.0, 0.0, 0.0])  # the model loves label 0 whatever the text
    raw_acc = (fu.model_feature(biased).argmax(1) == gold).mean()
    bc_acc = (fu.model_feature(biased, batch_calibrate=True).argmax(1) == gold).mean()
    assert bc_acc > raw_acc + 0.3
    m = fu.model_feature(biased)
    assert np.allclose(np.exp(m).sum(1), 1.0)
    ln = fu.model_feature(np.array([[-6.0, -2.0]]), label_tokens=[3, 1])
    assert ln.argmax() == 0  # -6/3 > -2/1


def test_weights_roundtrip_and_errors():
    w = fu.Weights(knowledge=1.5, model=0.25, threshold=0.3, annotated=12, source="fitted")
    assert fu.Weights.from_dict(w.to_dict()) == w
    with pytest.raises(ValueError):
        fu.Weights.from_dict({"knowledge": 1.0, "temperature": 2.0})
    assert fu.default_weights(True) is fu.DEFAULT_MULTI and fu.default_weights(False) is fu.DEFAULT
    x = np.zeros((2, 3, fu.F))
    with pytest.raises(ValueError):
        fu.features(np.ones((2, 4)), np.ones((3, 4)), model_logp=np.zeros((2, 2)))
    with pytest.raises(ValueError):
        fu.fit(np.ones((12, 3, fu.F)), np.zeros((12, 2)), multiple=True)
    p = fu.probabilities(x, fu.DEFAULT)
    assert np.allclose(p, 1 / 3)


def test_use_ablates_a_column():
    x, gold, _ = synthetic_single(n=500)
    w = fu.Weights(knowledge=1.0, model=50.0)
    with_model = fu.probabilities(x, w)
    without = fu.probabilities(x, w, use=("knowledge",))
    assert not np.allclose(with_model, without)
    assert np.allclose(without, fu.probabilities(x, fu.Weights(knowledge=1.0)))


def test_multilabel_set_score_is_platt_calibrated_on_the_fitted_tasks():
    # labels that always go together: the independence product understates the chance the set is exactly right
    rng = np.random.default_rng(7)
    n, labels = 2000, 4
    x = np.zeros((n, labels, fu.F))
    t = rng.normal(size=(n, 1))
    x[..., 0] = t + 0.05 * rng.normal(size=(n, labels))
    y = np.repeat(rng.random((n, 1)) < 1 / (1 + np.exp(-3.0 * t)), labels, axis=1).astype(float)
    w = fu.fit(x, y, multiple=True, prior=fu.Weights(), l2=1e-4, use=("knowledge",))
    assert (w.set_scale, w.set_shift) != (1.0, 0.0)
    p = fu.probabilities(x, w, multiple=True)
    chosen, raw = fu.decide(p, True, w.threshold)
    _, calibrated = fu.decide(p, True, w.threshold, calibration=(w.set_scale, w.set_shift))
    exact = (chosen == (y > 0)).all(axis=1)
    assert fu.ece(calibrated, exact) < fu.ece(raw, exact)
    assert fu.ece(calibrated, exact) < 0.05
    assert np.array_equal(np.argsort(calibrated, kind="stable"), np.argsort(raw, kind="stable"))  # same ranking


def test_without_the_model_the_defaults_are_fitted_without_its_column():
    for multiple in (False, True):
        w = fu.default_weights(multiple, model=False)
        assert w.model == 0.0 and w != fu.default_weights(multiple)
    # dropping the model column under the multi-label defaults shifts every score up by about 0.72 * 3.5 nats:
    # the no-model defaults' bias takes that shift back
    assert fu.DEFAULT_MULTI_NO_MODEL.bias < fu.DEFAULT_MULTI.bias - 2.0
    assert fu.Weights.from_dict({**fu.DEFAULT.to_dict()}).set_scale == 1.0


def test_a_version_without_the_model_decides_with_its_no_model_weights():
    from service.labeling import choices_config, parse_config
    from service.predictor import Prompt

    control = parse_config(choices_config(["a", "b"], True, "intents")).choices[0]
    fitted = fu.Weights(knowledge=1.0, model=2.0, source="fitted", annotated=30)
    alone = fu.Weights(knowledge=3.0, bias=-1.0, source="fitted", annotated=30)
    record = {"intents": {"labels": ["a", "b"], "weights": fitted.to_dict(), "weights_without_model": alone.to_dict()}}
    assert Prompt("p", decision=record).weights(control) == fitted
    assert Prompt("p", decision=record, model=False).weights(control) == alone
    older = {"intents": {"labels": ["a", "b"], "weights": fitted.to_dict()}}  # recorded before the no-model fit
    assert Prompt("p", decision=older, model=False).weights(control) == fu.DEFAULT_MULTI_NO_MODEL
    assert Prompt("p", model=False).weights(control) == fu.DEFAULT_MULTI_NO_MODEL

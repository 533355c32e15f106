"""One fused label decision from label knowledge, corrections and the model (issue 10). numpy only.

Evidence per (task, label), each a column of ``features(...)`` (shape ``(tasks, labels, F)``):

- ``knowledge``    cosine of the task text to the label's description (name as words + hint + definition);
- ``nearest``      cosine to the label's nearest correction (0 when the label has none, see ``no_examples``);
- ``no_examples``  1.0 when the label has no correction in the pool (its weight is the learned floor of ``nearest``);
- ``centroid``     cosine to the normalised mean of the label's corrections plus its description vector
                   (= ``knowledge`` for a label without corrections);
- ``model``        the model's constrained log P(label | prompt, answer in the label set), renormalised per task
                   (0 when no model evidence is given: a constant column has no effect on a softmax);
- ``nearest_other`` multi-label only in practice: cosine to the nearest correction that does *not* carry the label;
- ``knowledge_alone`` ``knowledge`` for a label without corrections, else 0: how much the description counts when it
                   is all there is (with no annotations at all it sets the temperature of the knowledge-only decision).

Combiner. Single choice: a conditional logit, ``P(label | task) = softmax_l(w . x[task, l])``, the same few weights
for every label (so a label with no correction is scored like any other, through its knowledge and centroid).
Multiple choice: ``P(label applies) = sigmoid(w . x[task, l] + bias)`` per label, chosen when it reaches
``threshold``. The weights are fitted by maximum likelihood with an L2 pull towards ``DEFAULT`` (so a project with
a few annotations stays near the defaults, and one with none uses them); their scale is the temperature, so the
fitted probabilities are calibrated (measure with ``ece``).

Leave-one-out is the caller's job: the features of an annotated task used for ``fit`` must be computed without
that task in the pool (``exclude_self``), and its model evidence under a prompt whose demonstrations exclude it;
otherwise ``nearest`` is 1.0 on the gold label and the fit learns to trust it blindly.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

FEATURES = ("knowledge", "nearest", "no_examples", "centroid", "model", "nearest_other", "knowledge_alone")
F = len(FEATURES)


def label_words(name: str) -> str:
    """A label name as words, CamelCase and snake_case split and lower-cased: "CheckAccountBalance" ->
    "check account balance"."""
    s = re.sub(r"[_\-./]+", " ", str(name))
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", s)
    return re.sub(r"\s+", " ", s).strip().lower()


def description(name: str, hint: str = "", definition: str = "") -> str:
    """The text a label's knowledge vector embeds: its name as words, then its hint and definition if any.

    A blank name is an error (a label always has a name); hint and definition are optional.
    """
    words = label_words(name)
    if not words:
        raise ValueError(f"label {name!r} has an empty name")
    parts = [words] + [p.strip() for p in (hint, definition) if p and p.strip()]
    return ": ".join([parts[0], ". ".join(parts[1:])]) if len(parts) > 1 else words


@dataclass(frozen=True)
class Weights:
    """How a prompt version decides: one weight per evidence kind, shared by all labels.

    ``bias``, ``threshold`` and the set score's calibration (``set_scale``, ``set_shift``: Platt scaling of the
    log-odds of the chosen set being exactly right) are used for multiple choice only. ``annotated`` is how many
    annotated tasks the weights were fitted on (0: the defaults), ``source`` says "default" or "fitted" for the
    version's record.
    """

    knowledge: float = 0.0
    nearest: float = 0.0
    no_examples: float = 0.0
    centroid: float = 0.0
    model: float = 0.0
    nearest_other: float = 0.0
    knowledge_alone: float = 0.0
    bias: float = 0.0
    threshold: float = 0.5
    set_scale: float = 1.0
    set_shift: float = 0.0
    annotated: int = 0
    source: str = "default"

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in FEATURES], dtype=np.float64)

    def with_vector(self, w: np.ndarray, **kw) -> Weights:
        return replace(self, **{f: float(v) for f, v in zip(FEATURES, w, strict=True)}, **kw)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Weights:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown weight names: {sorted(unknown)}")
        return cls(**d)


# Chosen by measurement (docs/fused-decision-research.md), not per set: one weight vector fitted on the
# leave-one-out features of dstc11-insurance and banking77 (two seeds each) at 0, 10, 25, 50 and 100 corrections,
# each (set, seed, size) weighted equally, with the model column = the default (zero-shot) prompt's label
# log-probabilities, batch-calibrated (``model_feature(..., batch_calibrate=True)``). Multiple choice: the same on
# nlupp-hotels (the only multi-label set).
DEFAULT = Weights(knowledge=-1.45, nearest=-0.79, no_examples=1.8, centroid=19.3, model=0.48, knowledge_alone=-3.02)
DEFAULT_MULTI = Weights(
    knowledge=0.35,
    nearest=3.67,
    no_examples=-0.45,
    centroid=6.9,
    model=0.72,
    nearest_other=-3.77,
    knowledge_alone=2.37,
    bias=-1.57,
    threshold=0.25,
)
# The same fits without the model column (docs/fused-decision-research.md, "DEFAULT ... without_model"): how a
# version decides when the model's evidence is off (the ablation, ``Prompt(model=False)``). With multiple choice
# the model column shifts every label's score (a log-probability over the set, about -3.5 nats), so dropping it
# without these weights would put every label above the threshold.
DEFAULT_NO_MODEL = Weights(knowledge=-1.07, nearest=-1.78, no_examples=1.93, centroid=21.2, knowledge_alone=-3.93)
DEFAULT_MULTI_NO_MODEL = Weights(
    knowledge=2.0,
    nearest=3.09,
    no_examples=-0.45,
    centroid=7.51,
    nearest_other=-3.62,
    knowledge_alone=2.22,
    bias=-4.65,
    threshold=0.25,
)
WITHOUT_MODEL = tuple(f for f in FEATURES if f != "model")
MIN_ANNOTATED = (
    20  # fewer annotated tasks than this: keep the defaults (measured: fitting on 10 over-tempered, ECE 0.11-0.18)
)


def default_weights(multiple: bool, model: bool = True) -> Weights:
    if model:
        return DEFAULT_MULTI if multiple else DEFAULT
    return DEFAULT_MULTI_NO_MODEL if multiple else DEFAULT_NO_MODEL


# -- evidence ---------------------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def multihot(pool_labels, n_labels: int) -> np.ndarray:
    """(pool, labels) 0/1 from label indices (single choice) or lists of indices / a multi-hot array."""
    if isinstance(pool_labels, np.ndarray) and pool_labels.ndim == 2:
        if pool_labels.shape[1] != n_labels:
            raise ValueError(f"pool_labels has {pool_labels.shape[1]} columns for {n_labels} labels")
        return (pool_labels > 0).astype(np.float64)
    out = np.zeros((len(pool_labels), n_labels))
    for i, lab in enumerate(pool_labels):
        idx = [lab] if np.isscalar(lab) else list(lab)
        for j in idx:
            if not 0 <= int(j) < n_labels:
                raise ValueError(f"pool entry {i}: label index {j} outside 0..{n_labels - 1}")
            out[i, int(j)] = 1.0
    return out


def model_feature(logp: np.ndarray, label_tokens=None, batch_calibrate: bool = False, reference=None) -> np.ndarray:
    """The model column from raw constrained log-probabilities (tasks, labels).

    ``label_tokens``: per-label token counts, to length-normalise (divide each label's log-probability);
    ``batch_calibrate``: subtract each label's mean (renormalised) log-probability over a batch of tasks scored
    under the same prompt: ``reference`` (raw log-probabilities of other tasks, e.g. the annotated pool's
    leave-one-out scores or the first tasks warmed) when given, else the rows of ``logp`` themselves.
    The result is renormalised per task (a log-softmax).
    """

    def prep(v):
        v = np.asarray(v, dtype=np.float64)
        if label_tokens is not None:
            v = v / np.maximum(np.asarray(label_tokens, dtype=np.float64), 1.0)[None]
        return _log_softmax(v)

    x = prep(logp)
    if batch_calibrate:
        ref = x if reference is None else prep(reference)
        if len(ref):
            x = _log_softmax(x - ref.mean(axis=0, keepdims=True))
    return x


def features(
    text_vecs: np.ndarray,
    label_vecs: np.ndarray,
    pool_vecs: np.ndarray | None = None,
    pool_labels=None,
    model_logp: np.ndarray | None = None,
    exclude_self: np.ndarray | None = None,
) -> np.ndarray:
    """(tasks, labels, F) evidence; see the module docstring for the columns.

    ``text_vecs`` (tasks, d), ``label_vecs`` (labels, d) and ``pool_vecs`` (pool, d) are sentence vectors
    (normalised here). ``pool_labels``: the corrections' labels, an index per entry or a list of indices per entry
    (multiple choice; an empty list is a task with no label) or a (pool, labels) multi-hot array.
    ``model_logp`` (tasks, labels): log-probabilities (e.g. from ``model_feature``); renormalised per task.
    ``exclude_self`` (tasks,): the pool index that task may not use (-1: none), for leave-one-out features.
    """
    t = _unit(np.asarray(text_vecs, dtype=np.float64))
    lv = _unit(np.asarray(label_vecs, dtype=np.float64))
    n_tasks, n_labels = len(t), len(lv)
    if t.ndim != 2 or lv.ndim != 2 or (n_tasks and t.shape[1] != lv.shape[1]):
        raise ValueError("text_vecs and label_vecs must be 2-D with the same width")
    x = np.zeros((n_tasks, n_labels, F))
    know = t @ lv.T
    x[..., 0] = know
    x[..., 2] = 1.0
    x[..., 3] = know
    x[..., 5] = 0.0
    x[..., 6] = know
    if pool_vecs is not None and len(pool_vecs):
        pv = _unit(np.asarray(pool_vecs, dtype=np.float64))
        hot = multihot(pool_labels, n_labels)  # (P, L)
        if len(hot) != len(pv):
            raise ValueError(f"{len(pv)} pool vectors but {len(hot)} pool labels")
        sims = t @ pv.T  # (T, P)
        usable = np.ones_like(sims, dtype=bool)
        if exclude_self is not None:
            ex = np.asarray(exclude_self, dtype=np.int64)
            if ex.shape != (n_tasks,):
                raise ValueError("exclude_self needs one pool index (or -1) per task")
            rows = np.nonzero(ex >= 0)[0]
            usable[rows, ex[rows]] = False
        # nearest correction of each label (and of the other labels), per task
        has = hot[None].astype(bool) & usable[:, :, None]  # (T, P, L)
        masked = np.where(has, sims[:, :, None], -np.inf)
        near = masked.max(axis=1)  # (T, L)
        found = np.isfinite(near)
        x[..., 1] = np.where(found, near, 0.0)
        x[..., 2] = (~found).astype(np.float64)
        other = np.where(~hot[None].astype(bool) & usable[:, :, None], sims[:, :, None], -np.inf).max(axis=1)
        x[..., 5] = np.where(np.isfinite(other), other, 0.0)
        x[..., 6] = np.where(found, 0.0, know)
        # centroid of the label's usable corrections plus its description vector, renormalised
        sums = hot.T @ pv  # (L, d)
        cent = sums[None] + lv[None]  # (1, L, d), then remove each task's own entry where excluded
        if exclude_self is not None and np.any(np.asarray(exclude_self) >= 0):
            cent = np.repeat(cent, n_tasks, axis=0)
            for i in np.nonzero(np.asarray(exclude_self) >= 0)[0]:
                j = int(exclude_self[i])
                cent[i] -= hot[j][:, None] * pv[j][None]
        cent = _unit(cent)
        x[..., 3] = np.einsum("td,tld->tl", t, np.broadcast_to(cent, (n_tasks, n_labels, t.shape[1])))
    if model_logp is not None:
        m = np.asarray(model_logp, dtype=np.float64)
        if m.shape != (n_tasks, n_labels):
            raise ValueError(f"model_logp has shape {m.shape}, expected {(n_tasks, n_labels)}")
        x[..., 4] = _log_softmax(m)
    return x


# -- the combiner ----------------------------------------------------------------------------------------------


def _log_softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _scores(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x @ w


def probabilities(
    x: np.ndarray, weights: Weights, multiple: bool = False, use: tuple[str, ...] | None = None
) -> np.ndarray:
    """(tasks, labels): single choice P(label) summing to 1 per task; multiple choice P(label applies).

    ``use``: only these evidence columns (the others' weights taken as 0), for ablations.
    """
    w = weights.vector()
    if use is not None:
        w = w * np.array([f in use for f in FEATURES])
    s = _scores(x, w)
    if multiple:
        return _sigmoid(s + weights.bias)
    return np.exp(_log_softmax(s))


def decide(
    probs: np.ndarray,
    multiple: bool = False,
    threshold: float = 0.5,
    allow_empty: bool = True,
    calibration: tuple[float, float] = (1.0, 0.0),
):
    """Single: (label index per task, its probability). Multiple: (multi-hot choices, score per task), where a
    label is chosen when its probability reaches ``threshold`` (the top label alone when none does and an empty
    answer is not allowed) and the score is the probability that the chosen set is exactly right: treating labels
    as independent, prod(p chosen) * prod(1 - p not chosen), then Platt-scaled by ``calibration`` (scale, shift
    of its log-odds; fitted with the weights, because the labels are not independent)."""
    p = np.asarray(probs, dtype=np.float64)
    if not multiple:
        best = p.argmax(axis=1)
        return best, p[np.arange(len(p)), best]
    chosen = p >= threshold
    if not allow_empty:
        empty = ~chosen.any(axis=1)
        chosen[empty, p[empty].argmax(axis=1)] = True
    score = np.where(chosen, p, 1.0 - p).prod(axis=1)
    scale, shift = calibration
    if (scale, shift) != (1.0, 0.0):
        score = _sigmoid(scale * _logit(score) + shift)
    return chosen, score


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(q) - np.log1p(-q)


def fit_set_calibration(score: np.ndarray, exact: np.ndarray, l2: float = 1.0) -> tuple[float, float]:
    """(scale, shift) of Platt scaling on the log-odds of the set scores, against exact match, pulled towards
    the identity (1, 0) with weight ``l2``."""
    z = _logit(score)
    x = np.stack([z, np.ones_like(z)], axis=1)
    w = _newton_logistic(x, np.asarray(exact, dtype=np.float64), np.array([1.0, 0.0]), np.array([l2, l2]), 50)
    return float(w[0]), float(w[1])


def fit(
    x: np.ndarray,
    gold,
    multiple: bool = False,
    prior: Weights | None = None,
    l2: float = 1.0,
    use: tuple[str, ...] | None = None,
    min_annotated: int = MIN_ANNOTATED,
    l2_scale: float = 1e-3,
    iters: int = 50,
) -> Weights:
    """Weights fitted on annotated tasks, pulled towards ``prior`` (default: the defaults).

    Parametrised as ``w = scale * prior + delta``: the scale (a temperature on the prior's direction: calibration)
    is nearly free (``l2_scale * (scale - 1)^2``), the deviation from the prior's direction costs ``l2 * ||delta||^2``
    (the sum of the tasks' negative log-likelihoods is the data term). So a few annotated tasks mostly re-temper the
    defaults and many can change how the evidence is mixed.

    ``x``: (tasks, labels, F) leave-one-out features of the annotated tasks (the caller computes them without each
    task's own annotation; see the module docstring). ``gold``: single choice, the gold label index per task;
    multiple choice, a (tasks, labels) multi-hot array (a row of zeros is a task with no label). For multiple choice
    the bias is fitted too and the threshold chosen to maximise micro-F1 on the same tasks.
    ``use``: fit only these columns (the rest stay at 0). Fewer than ``min_annotated`` tasks: the prior, unchanged.
    """
    prior = prior or default_weights(multiple)
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if x.ndim != 3 or x.shape[-1] != F:
        raise ValueError(f"features must be (tasks, labels, {F}), got {x.shape}")
    if multiple and np.shape(gold) != x.shape[:2]:
        raise ValueError(f"gold has shape {np.shape(gold)}, expected {x.shape[:2]}")
    if not multiple and np.shape(gold) != (n,):
        raise ValueError("gold needs one label index per task")
    if n < max(1, min_annotated):
        return replace(prior, annotated=n, source="default")
    mask = np.ones(F, dtype=bool) if use is None else np.array([f in use for f in FEATURES])
    w0 = prior.vector() * mask
    xm = x[..., mask]
    base = (x @ w0)[..., None]  # the prior's score: its coefficient is the scale
    aug = np.concatenate([base, xm], axis=-1)
    k = mask.sum()
    theta0 = np.concatenate([[1.0], np.zeros(k)])
    pen = np.concatenate([[l2_scale], np.full(k, l2)])
    if multiple:
        y = np.asarray(gold, dtype=np.float64)
        if y.shape != x.shape[:2]:
            raise ValueError(f"gold has shape {y.shape}, expected {x.shape[:2]}")
        flat = np.concatenate([aug.reshape(-1, k + 1), np.ones((aug.shape[0] * aug.shape[1], 1))], axis=1)
        theta = _newton_logistic(
            flat, y.reshape(-1), np.concatenate([theta0, [prior.bias]]), np.concatenate([pen, [1e-6]]), iters
        )
        w = np.zeros(F)
        w[mask] = theta[0] * w0[mask] + theta[1:-1]
        out = prior.with_vector(w, bias=float(theta[-1]), annotated=n, source="fitted")
        p = probabilities(x, out, multiple=True)
        out = replace(out, threshold=best_threshold(p, y))
        chosen, raw = decide(p, True, out.threshold)
        exact = (chosen == (y > 0)).all(axis=1)
        scale, shift = fit_set_calibration(raw, exact)
        return replace(out, set_scale=scale, set_shift=shift)
    g = np.asarray(gold, dtype=np.int64)
    if g.shape != (n,):
        raise ValueError("gold needs one label index per task")
    theta = _newton_clogit(aug, g, theta0, pen, iters)
    w = np.zeros(F)
    w[mask] = theta[0] * w0[mask] + theta[1:]
    return prior.with_vector(w, annotated=n, source="fitted")


def _newton(loss_grad_hess, w0: np.ndarray, iters: int) -> np.ndarray:
    """Damped Newton steps with backtracking on a convex loss."""
    w = w0.copy()
    cur, grad, hess = loss_grad_hess(w, True)
    for _ in range(iters):
        step = np.linalg.lstsq(hess + 1e-9 * np.eye(len(w)), grad, rcond=None)[0]
        t, new = 1.0, None
        while t > 1e-4:
            new = loss_grad_hess(w - t * step, False)[0]
            if new <= cur:
                break
            t *= 0.5
        if t <= 1e-4:
            break
        w = w - t * step
        done = cur - new < 1e-10 * max(1.0, abs(cur))
        cur, grad, hess = loss_grad_hess(w, True)
        if done:
            break
    return w


def _newton_clogit(x: np.ndarray, g: np.ndarray, w0: np.ndarray, pen: np.ndarray, iters: int) -> np.ndarray:
    """Conditional logit: minimise sum_i [logsumexp_l(x_il.w) - x_ig.w] + sum_k pen_k (w_k - w0_k)^2."""
    rows = np.arange(len(x))
    xg = x[rows, g]

    def f(w, derivatives):
        lp = _log_softmax(x @ w)
        loss = float(-lp[rows, g].sum() + np.sum(pen * (w - w0) ** 2))
        if not derivatives:
            return loss, None, None
        p = np.exp(lp)
        mean = np.einsum("nl,nlk->nk", p, x)
        grad = (mean - xg).sum(axis=0) + 2 * pen * (w - w0)
        centred = x - mean[:, None]
        hess = np.einsum("nl,nlk,nlj->kj", p, centred, centred) + np.diag(2 * pen)
        return loss, grad, hess

    return _newton(f, w0, iters)


def _newton_logistic(x: np.ndarray, y: np.ndarray, w0: np.ndarray, pen: np.ndarray, iters: int) -> np.ndarray:
    """Binary logistic regression: sum of log-losses + sum_k pen_k (w_k - w0_k)^2."""

    def f(w, derivatives):
        z = x @ w
        loss = float(np.sum(np.logaddexp(0, z) - y * z) + np.sum(pen * (w - w0) ** 2))
        if not derivatives:
            return loss, None, None
        p = _sigmoid(z)
        grad = x.T @ (p - y) + 2 * pen * (w - w0)
        hess = (x * (p * (1 - p))[:, None]).T @ x + np.diag(2 * pen)
        return loss, grad, hess

    return _newton(f, w0, iters)


def best_threshold(p: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None) -> float:
    """The threshold on P(label applies) with the best micro-F1 on (p, y); ties go to the value nearest 0.5."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2) if grid is None else grid
    yb = np.asarray(y) > 0
    best, best_f = 0.5, -1.0
    for th in sorted(grid, key=lambda v: abs(v - 0.5)):
        f = micro_f1(p >= th, yb)
        if f > best_f + 1e-12:
            best, best_f = float(th), f
    return best


# -- measures ----------------------------------------------------------------------------------------------------


def ece(probs_of_chosen, correct, bins: int = 15) -> float:
    """Expected calibration error: sum over equal-width confidence bins of |accuracy - mean confidence| * share."""
    c = np.asarray(probs_of_chosen, dtype=np.float64).reshape(-1)
    k = np.asarray(correct, dtype=np.float64).reshape(-1)
    if len(c) != len(k):
        raise ValueError("probs_of_chosen and correct differ in length")
    if not len(c):
        return 0.0
    idx = np.minimum((c * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(k[sel].mean() - c[sel].mean())
    return float(total)


def micro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    pred, gold = np.asarray(pred, bool), np.asarray(gold, bool)
    tp = np.sum(pred & gold)
    denom = pred.sum() + gold.sum()
    return float(2 * tp / denom) if denom else 1.0


def macro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Mean F1 over labels that occur in the gold or the predictions."""
    pred, gold = np.asarray(pred, bool), np.asarray(gold, bool)
    scores = []
    for j in range(gold.shape[1]):
        if gold[:, j].any() or pred[:, j].any():
            scores.append(micro_f1(pred[:, j], gold[:, j]))
    return float(np.mean(scores)) if scores else 1.0

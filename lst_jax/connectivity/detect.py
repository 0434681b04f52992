"""Adversarial detection from the loss curve between an input and a real image of its
predicted class (paper 4.2.1).

What follows the paper: the detector is a learned classifier on "the interpolation loss curve
and logits" of the input [paper, via a public review]; the curve is the primary (linear,
unoptimised) path. Everything else is our design (the paper gives no details): for an input
x with predicted class c, the path runs from a fixed clean low-loss reference image r_c of
class c (the lowest-CE correctly classified image of c in a reference set disjoint from the
evaluated images) to x; features are the CE of c at the path's points (250 by default), the
barrier max, gap and position, and the logits at x; the classifier is a scikit-learn
logistic regression on standardised features, evaluated by stratified k-fold
cross-validation (out-of-fold probabilities -> AUROC, accuracy at 0.5, ROC curve).
Deterministic for a seed (fold assignment; lbfgs is deterministic).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from lst_jax.connectivity.objective import cross_entropy
from lst_jax.connectivity.paths import barrier_stats, path_losses
from lst_jax.data.pool import predict_logits
from lst_jax.utils.checks import check_positive_int

FEATURE_SETS = ("curve+logits", "curve", "logits")


def class_losses(model_fn, params, x, labels, batch_size: int = 256) -> np.ndarray:
    """Per-image CE of `labels` (chunked). Shape: x (N, H, W, C), labels (N,) -> (N,)."""
    logits = predict_logits(model_fn, params, x, batch_size)
    return np.asarray(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))



def select_references(model_fn, params, images, labels, classes=None):
    """Per class the correctly classified image with the lowest CE (the detector's fixed
    clean low-loss reference r_c).

    Returns:
        (references (K', H, W, C), classes (K',), their CE (K',), source indices (K',)).

    Raises:
        ValueError: a class without a correctly classified image.
    """
    logits = predict_logits(model_fn, params, images)
    ce = np.asarray(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))
    correct = logits.argmax(-1) == labels
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    idx = []
    for c in classes:
        cand = np.flatnonzero((labels == c) & correct)
        if len(cand) == 0:
            raise ValueError(f"no correctly classified reference image of class {c}")
        idx.append(int(cand[np.argmin(ce[cand])]))
    idx = np.asarray(idx)
    return images[idx], classes.astype(np.int32), ce[idx], idx


def curve_features(model_fn, params, inputs, references, reference_classes, *,
                   num_points: int = 250, chunk_size: int = 64, evaluate_fn=None,
                   logits=None):
    """Detector features of inputs: the CE curve from the reference of each input's predicted
    class to the input, its barrier statistics, and the input's logits.

    Returns:
        dict with `curve` (N, num_points), `max`, `gap`, `alpha` (N,), `logits` (N, K),
        `predicted` (N,).

    Shape:
        inputs: (N, H, W, C) in the model's space; references: (K', H, W, C) with classes
        `reference_classes` (K',).
    """
    if logits is None:
        logits = predict_logits(model_fn, params, inputs)
    pred = logits.argmax(-1).astype(np.int32)
    lookup = {int(c): i for i, c in enumerate(reference_classes)}
    missing = sorted(set(pred.tolist()) - set(lookup))
    if missing:
        raise ValueError(f"no reference image for predicted classes {missing}")
    refs = references[[lookup[int(c)] for c in pred]]
    curve = path_losses(model_fn, params, refs, inputs, pred, num_points,
                        chunk_size=chunk_size, evaluate_fn=evaluate_fn)
    bar = barrier_stats(curve)
    return {"curve": curve, "max": bar.max, "gap": bar.gap, "alpha": bar.alpha,
            "logits": logits.astype(np.float32), "predicted": pred}


def feature_matrix(features: dict, which: str = "curve+logits") -> np.ndarray:
    """Stacks the named feature set into (N, F). `which`: one of FEATURE_SETS."""
    if which not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {which!r}")
    parts = []
    if "curve" in which:
        parts += [features["curve"], features["max"][:, None], features["gap"][:, None],
                  features["alpha"][:, None]]
    if "logits" in which:
        parts.append(features["logits"])
    return np.concatenate(parts, axis=1).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Logistic-regression detector with stratified k-fold CV [ours]."""

    folds: int = 5
    C: float = 1.0
    max_iter: int = 5000

    def __post_init__(self):
        check_positive_int("folds", self.folds)
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        check_positive_int("max_iter", self.max_iter)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class DetectorResult(NamedTuple):
    """Cross-validated detector performance.

    Attributes:
        auroc: AUROC of the out-of-fold probabilities (all folds pooled).
        accuracy: accuracy of the out-of-fold predictions at probability 0.5.
        fold_auroc: AUROC per fold.
        scores: out-of-fold probability of "adversarial" per example.
        fpr, tpr: the pooled ROC curve.
        n_clean, n_adversarial: examples per class.
    """

    auroc: float
    accuracy: float
    fold_auroc: np.ndarray
    scores: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    n_clean: int
    n_adversarial: int

    def to_dict(self) -> dict:
        return {"auroc": self.auroc, "accuracy": self.accuracy,
                "fold_auroc_mean": float(np.mean(self.fold_auroc)),
                "fold_auroc_std": float(np.std(self.fold_auroc)),
                "n_clean": self.n_clean, "n_adversarial": self.n_adversarial}


def cross_validate_detector(x, is_adversarial, *, seed: int = 0,
                            config: DetectorConfig = DetectorConfig()) -> DetectorResult:
    """Stratified k-fold CV of `StandardScaler -> LogisticRegression` (scikit-learn).

    Shape:
        x: (N, F) features; is_adversarial: (N,) bool / {0, 1}.

    Raises:
        ValueError: fewer examples of a class than folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, np.float64)
    y = np.asarray(is_adversarial).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x must be (N, F) with N = len(is_adversarial), got {x.shape} and "
                         f"{y.shape}")
    counts = np.bincount(y, minlength=2)
    if counts.min() < config.folds:
        raise ValueError(f"need at least {config.folds} clean and {config.folds} adversarial "
                         f"examples for {config.folds}-fold CV, got {counts[0]} and "
                         f"{counts[1]}")
    cv = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=seed)
    scores = np.zeros(len(y))
    fold_auroc = []
    for train, test in cv.split(x, y):
        clf = make_pipeline(StandardScaler(),
                            LogisticRegression(C=config.C, max_iter=config.max_iter))
        clf.fit(x[train], y[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
        fold_auroc.append(roc_auc_score(y[test], scores[test]))
    fpr, tpr, _ = roc_curve(y, scores)
    return DetectorResult(auroc=float(roc_auc_score(y, scores)),
                          accuracy=float(accuracy_score(y, scores >= 0.5)),
                          fold_auroc=np.asarray(fold_auroc), scores=scores, fpr=fpr, tpr=tpr,
                          n_clean=int(counts[0]), n_adversarial=int(counts[1]))

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
Deterministic for a key (the fold assignment's `random_state` is derived from it,
`random_state_of`; lbfgs is deterministic).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.connectivity.objective import cross_entropy
from lst_jax.connectivity.paths import (
    barrier_stats_np,
    check_class_labels,
    check_inputs,
    path_losses_np,
)
from lst_jax.data.pool import predict_logits
from lst_jax.utils.checks import check_key, check_positive_int

FEATURE_SETS = ("curve+logits", "curve", "logits")


def class_losses(model_fn, params, x, labels, batch_size: int = 256) -> np.ndarray:
    """Per-image CE of `labels` (chunked). Shape: x (N, H, W, C), labels (N,) -> (N,)."""
    logits = predict_logits(model_fn, params, x, batch_size)
    return np.asarray(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)))



def select_references(model_fn, params, images, labels, *, classes=None):
    """Per class the correctly classified image with the lowest CE (the detector's fixed
    clean low-loss reference r_c).

    Returns:
        (references (K', H, W, C), classes (K',), their CE (K',), source indices (K',)),
        `jax.Array`s.

    Raises:
        ValueError: a class without a correctly classified image.

    Shape:
        images: (N, H, W, C); labels: (N,) int; classes: (K',) int (default: those of
        `labels`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import select_references
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jnp.eye(8 * 8 * 3, 4)
        >>> x = jnp.zeros((3, 8, 8, 3)).at[:, 0, 0, 0].set(jnp.array([1.0, 2.0, 0.5]))
        >>> refs, cls, ce, idx = select_references(model_fn, params, x, jnp.zeros(3, int))
        >>> idx.tolist(), cls.tolist()
        ([1], [0])
    """
    images = check_inputs("images", images)
    labels = check_class_labels("labels", labels, model_fn, params, images.shape[1:],
                                len(images))
    refs, cls, ce, idx = _select_references(model_fn, params, images, labels, classes)
    return jax.device_put((refs, cls, ce, idx))


def _select_references(model_fn, params, images, labels, classes=None):
    """`select_references` on numpy, without validation (numpy results)."""
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


def curve_features(model_fn, params, images, references, reference_classes, *,
                   num_points: int = 250, logits=None, batch_size: int | None = None,
                   memory_budget=None, mesh=None) -> dict:
    """Detector features of inputs: the CE curve from the reference of each input's predicted
    class to the input, its barrier statistics, and the input's logits.

    Args:
        logits: the inputs' logits when already known (else one forward pass).
        batch_size, memory_budget, mesh: the path losses' (see `path_losses`).

    Returns:
        dict of `jax.Array`s: `curve` (N, num_points), `max`, `gap`, `alpha` (N,),
        `logits` (N, K), `predicted` (N,).

    Raises:
        ValueError: a predicted class without a reference.

    Shape:
        images: (N, H, W, C) in the model's space; references: (K', H, W, C) with classes
        `reference_classes` (K',).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from lst_jax.connectivity import curve_features
        >>> model_fn = lambda p, x: x.reshape(len(x), -1) @ p
        >>> params = jax.random.normal(jax.random.key(0), (8 * 8 * 3, 4))
        >>> refs = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
        >>> f = curve_features(model_fn, params, jnp.ones((2, 8, 8, 3)), refs,
        ...                    jnp.arange(4), num_points=5)
        >>> f["curve"].shape, f["logits"].shape
        ((2, 5), (2, 4))
    """
    images = check_inputs("images", images)
    references = check_inputs("references", references)
    reference_classes = np.asarray(reference_classes)
    if reference_classes.shape != (len(references),):
        raise ValueError(f"reference_classes must have shape ({len(references)},), got "
                         f"{reference_classes.shape}")
    out = _curve_features(model_fn, params, images, references, reference_classes,
                          num_points=num_points, logits=logits, batch_size=batch_size,
                          memory_budget=memory_budget, mesh=mesh)
    return jax.device_put(out)


def _curve_features(model_fn, params, inputs, references, reference_classes, *,
                    num_points: int = 250, logits=None, batch_size=None, memory_budget=None,
                    mesh=None) -> dict:
    """`curve_features` on numpy, without validation (numpy results)."""
    if logits is None:
        logits = predict_logits(model_fn, params, inputs)
    logits = np.asarray(logits)
    pred = logits.argmax(-1).astype(np.int32)
    lookup = {int(c): i for i, c in enumerate(np.asarray(reference_classes))}
    missing = sorted(set(pred.tolist()) - set(lookup))
    if missing:
        raise ValueError(f"no reference image for predicted classes {missing}")
    refs = np.asarray(references)[[lookup[int(c)] for c in pred]]
    curve = path_losses_np(model_fn, params, refs, inputs, pred, num_points,
                           batch_size=batch_size, memory_budget=memory_budget, mesh=mesh)
    bar = barrier_stats_np(curve)
    return {"curve": curve, "max": bar.max, "gap": bar.gap, "alpha": bar.alpha,
            "logits": logits.astype(np.float32), "predicted": pred}


def feature_matrix(features: dict, *, which: str = "curve+logits") -> jax.Array:
    """Stacks the named feature set of `curve_features` into one matrix (float32, the
    features' own precision). `which`: one of FEATURE_SETS.

    Shape:
        features: curve (N, P), max, gap, alpha (N,), logits (N, K) -> (N, F) with F =
        P + 3 + K ("curve+logits"), P + 3 ("curve") or K ("logits").

    Example:
        >>> import jax.numpy as jnp
        >>> from lst_jax.connectivity import feature_matrix
        >>> f = {"curve": jnp.zeros((2, 5)), "max": jnp.zeros(2), "gap": jnp.zeros(2),
        ...      "alpha": jnp.zeros(2), "logits": jnp.zeros((2, 4))}
        >>> feature_matrix(f, which="curve").shape, feature_matrix(f).shape
        ((2, 8), (2, 12))
    """
    if which not in FEATURE_SETS:
        raise ValueError(f"which must be one of {FEATURE_SETS}, got {which!r}")
    f = {k: np.asarray(features[k], np.float32) for k in ("curve", "max", "gap", "alpha",
                                                          "logits") if k in features}
    parts = []
    if "curve" in which:
        parts += [f["curve"], f["max"][:, None], f["gap"][:, None], f["alpha"][:, None]]
    if "logits" in which:
        parts.append(f["logits"])
    return jax.device_put(np.concatenate(parts, axis=1))


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
        try:
            c = float(self.C)
        except (TypeError, ValueError):
            raise ValueError(f"C must be a positive number, got {self.C!r}") from None
        if not np.isfinite(c) or c <= 0:
            raise ValueError(f"C must be a positive number, got {self.C!r}")

    def replace(self, **changes) -> "DetectorConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class DetectorResult(NamedTuple):
    """Cross-validated detector performance (`jax.Array` leaves).

    Attributes:
        auroc: AUROC of the out-of-fold probabilities (all folds pooled).
        accuracy: accuracy of the out-of-fold predictions at probability 0.5.
        fold_auroc: AUROC per fold.
        scores: out-of-fold probability of "adversarial" per example.
        fpr, tpr: the pooled ROC curve.
        n_clean, n_adversarial: examples per class.

    Shape:
        auroc, accuracy, n_clean, n_adversarial: (); fold_auroc: (folds,); scores: (N,);
        fpr, tpr: (R,).
    """

    auroc: jax.Array
    accuracy: jax.Array
    fold_auroc: jax.Array
    scores: jax.Array
    fpr: jax.Array
    tpr: jax.Array
    n_clean: jax.Array
    n_adversarial: jax.Array

    def to_dict(self) -> dict:
        return {"auroc": float(self.auroc), "accuracy": float(self.accuracy),
                "fold_auroc_mean": float(np.mean(self.fold_auroc)),
                "fold_auroc_std": float(np.std(self.fold_auroc)),
                "n_clean": int(self.n_clean), "n_adversarial": int(self.n_adversarial)}


def random_state_of(key) -> int:
    """scikit-learn's `random_state` from a typed key: the XOR of the key's 32-bit words
    (`jax.random.key(seed)` with the default threefry implementation gives `seed` for
    0 <= seed < 2**32, so a CLI seed keeps its folds)."""
    words = np.asarray(jax.random.key_data(check_key(key)), np.uint32).ravel()
    return int(np.bitwise_xor.reduce(words))


def cross_validate_detector(features, is_adversarial, *, key,
                            config: DetectorConfig = DetectorConfig()) -> DetectorResult:
    """Stratified k-fold CV of `StandardScaler -> LogisticRegression` (scikit-learn); the
    folds are shuffled with `random_state_of(key)`.

    Raises:
        ValueError: fewer examples of a class than folds, mismatched shapes.
        TypeError: `key` not a typed PRNG key.

    Shape:
        features: (N, F); is_adversarial: (N,) bool / {0, 1}.

    Example:
        >>> import jax, numpy as np
        >>> from lst_jax.connectivity import DetectorConfig, cross_validate_detector
        >>> x = np.concatenate([np.zeros((6, 2)), np.ones((6, 2))])
        >>> x += np.random.default_rng(0).normal(0, 0.1, x.shape)
        >>> y = np.repeat([0, 1], 6)
        >>> res = cross_validate_detector(x, y, key=jax.random.key(0),
        ...                               config=DetectorConfig(folds=3))
        >>> float(res.auroc)
        1.0
    """
    res = cross_validate_np(features, is_adversarial, random_state=random_state_of(key),
                            config=config)
    return jax.device_put(res)


def cross_validate_np(x, is_adversarial, *, random_state: int,
                      config: DetectorConfig = DetectorConfig()) -> DetectorResult:
    """`cross_validate_detector` with an explicit `random_state` and float64 numpy / Python
    leaves (the jobs keep their float64 scores)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(config, DetectorConfig):
        raise TypeError(f"config must be a DetectorConfig, got {type(config).__name__}")
    x = np.asarray(x, np.float64)
    y = np.asarray(is_adversarial).astype(np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, F) with N = len(is_adversarial), got "
                         f"{x.shape} and {y.shape}")
    counts = np.bincount(y, minlength=2)
    if counts.min() < config.folds:
        raise ValueError(f"need at least {config.folds} clean and {config.folds} adversarial "
                         f"examples for {config.folds}-fold CV, got {counts[0]} and "
                         f"{counts[1]}")
    cv = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=random_state)
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

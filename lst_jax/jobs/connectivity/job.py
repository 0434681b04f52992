"""Per-model units of the connectivity method: barrier statistics and adversarial detection.

`barrier_model_run(model, config, root)` and `detect_model_run(model, config, root)` are
`lst_jax.jobs.rundir.cached_unit`s: each owns `root/connectivity_<barrier|detect>/
<model>-<digest of (model, checkpoint digest, full config)>/`; the same request returns the
stored `result.json` without recomputing, an interrupted one resumes from its finished
chunks (`.npz` written atomically), and a different config gets its own directory. The
manifest holds the full key, so a directory is never reused for another request
(`RunDir.ensure_manifest` refuses).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.metrics import roc_auc_score

from lst_jax.connectivity.attack import optimization_attack
from lst_jax.connectivity.config import AttackConfig, PGDConfig
from lst_jax.connectivity.detect import (
    FEATURE_SETS,
    DetectorConfig,
    class_losses,
    cross_validate_np,
    curve_features,
    feature_matrix,
    random_state_of,
)
from lst_jax.connectivity.objective import cross_entropy
from lst_jax.connectivity.paths import barrier_stats, path_losses
from lst_jax.connectivity.space import SPACES, model_in_space
from lst_jax.data.pool import predict_logits
from lst_jax.data.reference import DataRef, check_data_shape, load_images, open_images
from lst_jax.data.scan import first_correct, lowest_loss_correct
from lst_jax.jobs.rundir import RunDir, cached_unit, markdown_table
from lst_jax.models.reference import resolve_model
from lst_jax.parallel import data_mesh
from lst_jax.parallel import distributed as dist
from lst_jax.robustness import PGDAttackConfig, pgd_examples
from lst_jax.utils.checks import check_positive_int
from lst_jax.utils.progress import Progress

ATTACKS = ("optimization", "pgd")
NUM_CLASSES = {"digits": 10}


def _nested_dict(cfg) -> dict:
    out = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if isinstance(getattr(cfg, "data", None), DataRef):
        out["data"] = cfg.data.key()       # "digits": the keys of earlier versions
    return out


def _resolve_data(cfg, *splits):
    """`cfg.data` as a `DataRef` and each of `splits` (field names) left None resolved: the
    data's own split, else the kind's default (digits: test); detect's references: train
    where the data has splits (never the clean inputs' own images), else None (a folder)."""
    ref = DataRef.of(cfg.data)
    object.__setattr__(cfg, "data", ref)
    for name in splits:
        if getattr(cfg, name) is None:
            default = ref.resolved_split()
            if name == "reference_split" and default is not None:
                default = "train"
            object.__setattr__(cfg, name, default)


def _check_common(cfg):
    if cfg.space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {cfg.space!r}")
    check_positive_int("points", cfg.points)
    if cfg.points < 2:
        raise ValueError(f"points must be an integer >= 2, got {cfg.points}")
    check_positive_int("batch_size", cfg.batch_size)


@dataclasses.dataclass(frozen=True)
class BarrierRunConfig:
    """Barrier statistics of one model (paper 4.2, Fig. 6).

    `data`: a `DataRef` (or its kind name; default the digits), `split` default the data's.

    Per class c (in the split's order): real-real pairs (images 2p, 2p + 1 of c); real-
    adversarial pairs (image 2p of c vs the paper's attack toward c from image 2p of a
    uniformly drawn other class, early-stopped at the real image's loss); `points`-point
    paths; per class and group the `drop_per_class` pairs with the largest |L(A) - L(C)| are
    dropped (the authors' post-processing).
    """

    data: DataRef | str = "digits"
    split: str | None = None
    classes: tuple | None = None
    pairs_per_class: int = 7
    drop_per_class: int = 2
    points: int = 250
    attack: AttackConfig = AttackConfig()
    space: str = "normalized"
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self):
        _resolve_data(self, "split")
        _check_common(self)
        check_positive_int("pairs_per_class", self.pairs_per_class)
        if not isinstance(self.drop_per_class, int) or self.drop_per_class < 0:
            raise ValueError(f"drop_per_class must be an integer >= 0, got "
                             f"{self.drop_per_class!r}")
        if self.drop_per_class >= self.pairs_per_class:
            raise ValueError(f"drop_per_class ({self.drop_per_class}) must be less than "
                             f"pairs_per_class ({self.pairs_per_class}): every pair would be "
                             "dropped, leaving no barrier to report")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
            n = NUM_CLASSES.get(self.data.kind)
            bad = [c for c in self.classes if not 0 <= c < (n or np.inf)]
            if bad or not self.classes:
                raise ValueError(f"classes must lie in 0..{n - 1} (the {self.data.kind} "
                                 f"classes), got {list(self.classes)}" if n else
                                 f"classes must be >= 0, got {list(self.classes)}")

    def to_dict(self) -> dict:
        return _nested_dict(self)


@dataclasses.dataclass(frozen=True)
class DetectRunConfig:
    """Adversarial detection of one model (paper 4.2.1; design ours, see `detect`).

    Clean inputs: the first `num_samples` correctly classified images of `split`; references:
    per class the lowest-CE correct image of `reference_split`. Attacks: "optimization" (the
    paper's targeted attack from the clean image toward a uniformly drawn other class, early-
    stopped at the reference's loss, in the model's space) and "pgd" (untargeted L-inf PGD in
    pixels; default eps 16/255, 10 steps of 4/255: the shipped digits models' threat model,
    at the spec's ImageNet 4/255 PGD barely changes a digit's prediction). Only successful
    attacks enter the detector; clean inputs are all of them.
    """

    data: DataRef | str = "digits"
    split: str | None = None
    reference_split: str | None = None
    num_samples: int | None = None
    points: int = 250
    attacks: tuple = ATTACKS
    attack: AttackConfig = AttackConfig()
    pgd: PGDConfig = PGDConfig(eps=16 / 255, step_size=4 / 255)
    detector: DetectorConfig = DetectorConfig()
    features: str = "curve+logits"
    space: str = "normalized"
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self):
        _resolve_data(self, "split", "reference_split")
        _check_common(self)
        object.__setattr__(self, "attacks", tuple(self.attacks))
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad or not self.attacks:
            raise ValueError(f"attacks must be a non-empty subset of {ATTACKS}, got "
                             f"{self.attacks!r}")
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {FEATURE_SETS}, got {self.features!r}")
        if self.num_samples is not None:
            check_positive_int("num_samples", self.num_samples)
            if self.num_samples < self.detector.folds:
                raise ValueError(
                    f"num_samples ({self.num_samples}) must be at least folds "
                    f"({self.detector.folds}): the detector's {self.detector.folds}-fold "
                    f"cross-validation needs {self.detector.folds} clean and "
                    f"{self.detector.folds} adversarial examples")

    def to_dict(self) -> dict:
        return _nested_dict(self)


def check_classes(flag: str, classes, num_classes: int) -> None:
    """Refuses class indices outside the model's `num_classes` classes, in one line naming
    `flag` and the valid range (before any work)."""
    bad = [int(c) for c in classes if not 0 <= int(c) < num_classes]
    if bad:
        raise ValueError(f"{flag} must lie in 0..{num_classes - 1} (the model's "
                         f"{num_classes} classes), got {bad if len(bad) > 1 else bad[0]}")


def _run_unit(kind, model, config, config_type, root, checkpoint, compute) -> dict:
    """Opens the cached unit of (kind, model, checkpoint digest, config) and runs
    `compute(loaded, digest, run, fn, space)` unless its result is stored (the model is only
    built then; the digest is the verified one of the restored parameters). Any model
    (registry name or checkpoint directory) whose input shape fits the data; its class
    count bounds `config.classes`."""
    if not isinstance(config, config_type):
        raise ValueError(f"config must be a {config_type.__name__}, got "
                         f"{type(config).__name__}")
    ref = resolve_model(model, checkpoint)
    spec, model = ref.spec, ref.name
    check_data_shape(config.data, spec.input_size)
    if getattr(config, "classes", None) is not None:
        check_classes("--classes", config.classes, spec.num_classes)
    for split in {config.split, getattr(config, "reference_split", config.split)}:
        open_images(config.data, spec.input_size, split=split)   # bad data: before any work
    digest = ref.digest()
    key = {"model": model, "checkpoint_digest": digest, "config": config.to_dict()}

    def run_compute(run):
        loaded = ref.load()
        fn, space = model_in_space(loaded.model_fn, space=config.space)
        return compute(loaded, digest, run, fn, space)

    return cached_unit(root, f"connectivity_{kind}", model, key, run_compute,
                       manifest={"mode": f"connectivity {kind}", "model_spec": spec})


def _group_stats(mx, gap) -> dict:
    mx, gap = np.asarray(mx, np.float64), np.asarray(gap, np.float64)
    if len(mx) == 0:
        return {"n": 0}
    return {"n": int(len(mx)), "max_median": float(np.median(mx)),
            "max_mean": float(np.mean(mx)), "gap_median": float(np.median(gap)),
            "gap_mean": float(np.mean(gap))}


def drop_largest_endpoint_difference(classes, l1, l2, drop: int) -> np.ndarray:
    """Mask keeping, per class, all but the `drop` pairs with the largest |l1 - l2|
    (the authors' `postprocess_barriers`; ties keep the earlier pair)."""
    classes = np.asarray(classes)
    diff = np.abs(np.asarray(l1) - np.asarray(l2))
    keep = np.zeros(len(classes), bool)
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        n_keep = max(len(idx) - drop, 0)
        keep[idx[np.argsort(diff[idx], kind="stable")[:n_keep]]] = True
    return keep


def plan_barrier_pairs(labels, classes, pairs_per_class: int, seed: int):
    """Indices of the real-real and the real-adversarial pairs (see `BarrierRunConfig`).

    Returns:
        dict of int arrays: real_a, real_c, real_class; adv_a (real image), adv_source (the
        other-class image attacked), adv_class (the target class c).
    """
    rng = np.random.default_rng(seed)
    by_class = {int(c): np.flatnonzero(labels == c) for c in classes}
    out = {k: [] for k in ("real_a", "real_c", "real_class", "adv_a", "adv_source",
                           "adv_class")}
    for c in classes:
        idx = by_class[int(c)]
        for p in range(pairs_per_class):
            if 2 * p + 1 < len(idx):
                out["real_a"].append(idx[2 * p])
                out["real_c"].append(idx[2 * p + 1])
                out["real_class"].append(c)
        others = [o for o in classes if o != c]
        for p in range(pairs_per_class):
            if 2 * p >= len(idx):
                break
            o = others[int(rng.integers(len(others)))]
            if 2 * p >= len(by_class[int(o)]):
                continue
            out["adv_a"].append(idx[2 * p])
            out["adv_source"].append(by_class[int(o)][2 * p])
            out["adv_class"].append(c)
    return {k: np.asarray(v, np.int32) for k, v in out.items()}


def _chunks(n: int, size: int):
    return [(i, s, min(s + size, n)) for i, s in enumerate(range(0, n, size))]


def _compute_missing(run, names, sizes, compute, bar: Progress):
    """`compute(j) -> {name: array}` for every item j whose file `names[j]` is missing from
    `run`, split over the processes (`distributed.share_work`; `run` is None on processes
    other than 0); each result is saved atomically as `names[j]` and advances `bar` by
    `sizes[j]`."""
    todo = dist.pending_items(len(names), lambda j: run.exists(names[j]))
    with bar:
        bar.update(sum(sizes) - sum(sizes[j] for j in todo))

        def save(j, arrays):
            run.save_npz(names[j], **arrays)
            bar.update(sizes[j])

        dist.share_work(todo, compute, save)


def barrier_model_run(model: str, config: BarrierRunConfig = BarrierRunConfig(), root="runs",
                      *, checkpoint=None, progress: bool = True, memory_budget=None) -> dict:
    """Barrier statistics of one model (registry name, checkpoint directory or in-memory
    model, `resolve_model`), in (or from) its own run directory.

    `model`: a registry name or checkpoint directory (any input size and class count that
    fit `config.data`). `memory_budget`: bytes per device (int or "2GiB") of one call of the
    path losses and the attack (rows and path points planned from it; None: `batch_size`
    rows, 64 path points); a compute setting, not part of the cache key.

    Returns the summary: `real` and `adversarial` groups each with `n`, `max_median`,
    `max_mean`, `gap_median`, `gap_mean` (after the authors' post-processing; `raw` before
    it), attack success rate and steps, and `run_dir`.
    """
    return _run_unit("barrier", model, config, BarrierRunConfig, root, checkpoint,
                     lambda *a: _barrier_compute(config, progress, memory_budget, *a))


def _barrier_compute(config, progress, budget, loaded, digest, run, fn, space) -> dict:
    model = loaded.spec.name
    params = loaded.params
    # the first 2 * pairs_per_class images of each class: every image a pair can use
    images, labels = load_images(config.data, loaded.spec.input_size, split=config.split,
                                 per_class=2 * config.pairs_per_class, classes=config.classes)
    classes = list(config.classes) if config.classes is not None else \
        sorted(int(c) for c in np.unique(labels))
    x = np.asarray(space.from_pixels(images))
    plan = plan_barrier_pairs(labels, classes, config.pairs_per_class, config.seed)
    n_adv = len(plan["adv_a"])
    chunks = _chunks(n_adv, config.batch_size)

    def compute(j):      # item 0: the real-real paths; item 1 + i: adversarial chunk i
        if j == 0:
            return {"curves": path_losses(fn, params, x[plan["real_a"]], x[plan["real_c"]],
                                          plan["real_class"], num_points=config.points,
                                          memory_budget=budget)}
        _, s, e = chunks[j - 1]
        a, src, c = (plan["adv_a"][s:e], plan["adv_source"][s:e], plan["adv_class"][s:e])
        stop = class_losses(fn, params, x[a], c)
        res = optimization_attack(fn, params, x[src], c, stop_loss=stop, config=config.attack,
                                  batch_size=config.batch_size, memory_budget=budget)
        curves = path_losses(fn, params, x[a], res.x, c, num_points=config.points,
                             memory_budget=budget)
        pred = predict_logits(fn, params, res.x).argmax(-1)
        return dict(curves=curves, steps=res.steps, success=pred == c,
                    out_of_range=space.out_of_range_fraction(res.x))

    names = ["real.npz"] + [f"adv/b{i:04d}.npz" for i, _, _ in chunks]
    _compute_missing(run, names, [0] + [e - s for _, s, e in chunks], compute,
                     Progress(n_adv, desc="attack + path", unit="pairs",
                              enabled=progress and dist.is_main_process()))
    if run is None:      # another process of a multi-process run: process 0 writes
        return None
    real_curves = run.load_npz("real.npz")["curves"]
    parts = [run.load_npz(f"adv/b{i:04d}.npz") for i, _, _ in chunks]
    adv = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    summary = _barrier_summary(model, digest, config, plan, real_curves, adv)
    _write_barrier_tables(run, model, summary, plan, real_curves, adv, config)
    return summary


def _barrier_summary(model, digest, config, plan, real_curves, adv) -> dict:
    out = {"model": model, "checkpoint_digest": digest, "config": config.to_dict()}
    groups = {"real": (plan["real_class"], real_curves),
              "adversarial": (plan["adv_class"], adv.get("curves", np.zeros((0, 2))))}
    out["raw"] = {}
    for name, (cls, curves) in groups.items():
        if len(curves) == 0:
            out[name] = out["raw"][name] = {"n": 0}
            continue
        bar = barrier_stats(curves)
        keep = drop_largest_endpoint_difference(cls, bar.start, bar.end,
                                                config.drop_per_class)
        out[name] = _group_stats(bar.max[keep], bar.gap[keep])
        out["raw"][name] = _group_stats(bar.max, bar.gap)
    if adv:
        out["adversarial"].update(attack_success=float(np.mean(adv["success"])),
                                  attack_steps_mean=float(np.mean(adv["steps"])),
                                  out_of_range_fraction=float(np.mean(adv["out_of_range"])))
    return out


def barrier_table(summaries: dict) -> str:
    """Markdown table of barrier summaries (label -> `barrier_model_run` result)."""
    rows = []
    for label, s in summaries.items():
        for g in ("real", "adversarial"):
            st = s[g]
            if not st.get("n"):
                continue
            extra = (f"{100 * st['attack_success']:.0f}% / {st['attack_steps_mean']:.0f}"
                     if g == "adversarial" else "-")
            rows.append([label, "real-real" if g == "real" else "real-adversarial", st["n"],
                         f"{st['max_median']:.3g}", f"{st['max_mean']:.3g}",
                         f"{st['gap_median']:.3g}", f"{st['gap_mean']:.3g}", extra])
    return markdown_table(["model", "pairs", "n", "max median", "max mean", "gap median",
                           "gap mean", "attack success / steps"], rows)


def _barrier_box_data(plan, real_curves, adv, config) -> dict:
    out = {}
    for name, cls, curves in (("real", plan["real_class"], real_curves),
                              ("adversarial", plan["adv_class"],
                               adv.get("curves", np.zeros((0, 2))))):
        if len(curves) == 0:
            out[name] = {"max": np.zeros(0), "gap": np.zeros(0)}
            continue
        bar = barrier_stats(curves)
        keep = drop_largest_endpoint_difference(cls, bar.start, bar.end,
                                                config.drop_per_class)
        out[name] = {"max": bar.max[keep], "gap": bar.gap[keep]}
    return out


def barrier_box_data(run_dir) -> dict:
    """The kept barrier max / gap values of a finished barrier run (for boxplots)."""
    z = RunDir(run_dir).load_npz("stats.npz")
    return {g: {"max": z[f"{g}_max"], "gap": z[f"{g}_gap"]} for g in ("real", "adversarial")}


def _write_barrier_tables(run, model, summary, plan, real_curves, adv, config):
    from lst_jax.plots.connectivity import barrier_boxplots

    box = _barrier_box_data(plan, real_curves, adv, config)
    run.save_npz("stats.npz", **{f"{g}_{k}": v for g, d in box.items() for k, v in d.items()})
    run.write_text("tables.md", barrier_table({model: summary}))
    barrier_boxplots({model: box}, run.path("figures/boxplots.png"),
                     title=f"{model}: barrier statistics")


# --------------------------------------------------------------------------- detection


def _detect_data(config: DetectRunConfig, fn, params, space, shape, progress: bool):
    """The clean candidates: the first `num_samples` correctly classified images of the
    split (streamed, so only they are held in memory): source indices, pixels, labels and
    model-space inputs."""
    source = open_images(config.data, shape, split=config.split)
    idx = first_correct(source, fn, params, limit=config.num_samples,
                        prepare=space.from_pixels, progress=progress)
    images, labels = source.get(idx)
    return idx, images, labels, np.asarray(space.from_pixels(images))


def detect_model_run(model: str, config: DetectRunConfig = DetectRunConfig(), root="runs", *,
                     checkpoint=None, progress: bool = True, memory_budget=None) -> dict:
    """Adversarial detection of one model (registry name, checkpoint directory or in-memory
    model, `resolve_model`), in (or from) its own run directory.

    `model`, `memory_budget`: as in `barrier_model_run` (the budget plans the curves' path
    points and the optimisation attack's rows).

    Returns the summary with, per attack, `auroc`, `accuracy`, fold statistics, attack
    success rate and the ablations (`auroc_by_features`: the detector on each feature set;
    `auroc_barrier_max`: the max loss alone as the score), plus `run_dir`.
    """
    return _run_unit("detect", model, config, DetectRunConfig, root, checkpoint,
                     lambda *a: _detect_compute(config, progress, memory_budget, *a))


def _detect_compute(config, progress, budget, loaded, digest, run, fn, space) -> dict:
    model = loaded.spec.name
    params = loaded.params
    shape = loaded.spec.input_size
    show = progress and dist.is_main_process()
    idx, images, labels, x = _detect_data(config, fn, params, space, shape, show)

    def references():
        if not run.exists("references.npz"):
            source = open_images(config.data, shape, split=config.reference_split)
            refs, ref_cls, ref_ce, ref_idx = _references(fn, params, source, space, show)
            run.save_npz("references.npz", images=refs, classes=ref_cls, ce=ref_ce,
                         index=ref_idx)
        return run.load_npz("references.npz")

    ref = dist.broadcast_arrays_of_main(references)   # process 0 selects / reads them
    ref_ce = dict(zip(ref["classes"].tolist(), ref["ce"].tolist()))
    keep = np.isin(labels, ref["classes"])             # clean inputs of a referenced class
    idx, images, labels, x = idx[keep], images[keep], labels[keep], x[keep]

    def feats(inp):
        """Curve features where the predicted class has a reference; NaN rows elsewhere
        (an adversarial input predicted as a class without one: not scored)."""
        logits = predict_logits(fn, params, inp)
        has = np.isin(logits.argmax(-1), ref["classes"])
        out = {"curve": np.full((len(inp), config.points), np.nan, np.float32),
               "max": np.full(len(inp), np.nan, np.float32), "logits": logits,
               "predicted": logits.argmax(-1).astype(np.int32), "has_reference": has}
        out["gap"], out["alpha"] = out["max"].copy(), out["max"].copy()
        if has.all():
            return dict(curve_features(fn, params, inp, ref["images"], ref["classes"],
                                       num_points=config.points, logits=logits,
                                       memory_budget=budget), has_reference=has)
        if has.any():
            f = curve_features(fn, params, inp[has], ref["images"], ref["classes"],
                               num_points=config.points, logits=logits[has],
                               memory_budget=budget)
            for k in ("curve", "max", "gap", "alpha"):
                out[k][has] = np.asarray(f[k])
        return out

    targets = (_attack_targets(labels, ref["classes"], config.seed)
               if "optimization" in config.attacks else None)
    chunks = _chunks(len(idx), config.batch_size)

    def compute(j):      # item 0: the clean features; then (attack, chunk) in order
        if j == 0:
            return dict(index=idx, **feats(x))
        name = config.attacks[(j - 1) // len(chunks)]
        i, s, e = chunks[(j - 1) % len(chunks)]
        rows = slice(s, e)
        if name == "optimization":
            t = targets[s:e]
            res = optimization_attack(fn, params, x[rows], t,
                                      stop_loss=np.asarray([ref_ce[int(c)] for c in t]),
                                      config=config.attack, batch_size=config.batch_size,
                                      memory_budget=budget)
            xa = res.x
        else:
            key = jax.random.fold_in(jax.random.key(config.seed), i)
            xa = np.asarray(space.from_pixels(pgd_examples(
                loaded.model_fn, params, images[rows], labels[rows], key=key,
                config=PGDAttackConfig(eps=config.pgd.eps, step_size=config.pgd.step_size,
                                       steps=config.pgd.steps),
                batch_size=config.batch_size, mesh=data_mesh())))
        f = feats(xa)
        success = (f["predicted"] == targets[s:e]) if name == "optimization" \
            else (f["predicted"] != labels[rows])
        return dict(success=success, **f)

    names = ["clean.npz"] + [f"{name}/b{i:04d}.npz" for name in config.attacks
                             for i, _, _ in chunks]
    _compute_missing(run, names, [0] + [e - s for _ in config.attacks for _, s, e in chunks],
                     compute, Progress(len(idx) * len(config.attacks), desc="attacks",
                                       unit="inputs",
                                       enabled=progress and dist.is_main_process()))
    if run is None:      # another process of a multi-process run: process 0 writes
        return None
    clean = run.load_npz("clean.npz")
    # The folds' random_state from the run's key (== config.seed for key(seed), so a CLI seed
    # keeps its folds); float64 scores, as the stored results.
    cv_state = random_state_of(jax.random.key(config.seed))
    summary = {"model": model, "checkpoint_digest": digest, "config": config.to_dict(),
               "n_clean": int(len(idx)), "attacks": {}}
    roc = {}
    for name in config.attacks:
        parts = [run.load_npz(f"{name}/b{i:04d}.npz") for i, _, _ in
                 _chunks(len(idx), config.batch_size)]
        adv = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        ok = adv["success"] & adv.get("has_reference", np.ones_like(adv["success"]))
        entry = {"attack_success": float(np.mean(adv["success"])),
                 "n_adversarial": int(ok.sum())}
        if not ok.sum() == adv["success"].sum():
            entry["n_no_reference"] = int(adv["success"].sum() - ok.sum())
        both = {k: np.concatenate([clean[k], adv[k][ok]]) for k in
                ("curve", "max", "gap", "alpha", "logits")}
        y = np.concatenate([np.zeros(len(idx), bool), np.ones(int(ok.sum()), bool)])
        try:
            res = cross_validate_np(feature_matrix(both, which=config.features), y,
                                    random_state=cv_state, config=config.detector)
        except ValueError as e:          # too few successful attacks for k-fold CV
            entry.update(auroc=None, accuracy=None, note=str(e))
            summary["attacks"][name] = entry
            continue
        entry.update(res.to_dict())
        entry["auroc_by_features"] = {
            fs: (res.auroc if fs == config.features else cross_validate_np(
                feature_matrix(both, which=fs), y, random_state=cv_state,
                config=config.detector).auroc)
            for fs in FEATURE_SETS}
        entry["auroc_barrier_max"] = float(roc_auc_score(y, both["max"]))
        summary["attacks"][name] = entry
        roc[name] = (res.fpr, res.tpr, res.auroc)
        run.save_npz(f"detector_{name}.npz", scores=res.scores, is_adversarial=y,
                     fpr=res.fpr, tpr=res.tpr)
    _write_detect_tables(run, model, summary, roc)
    return summary


def _references(fn, params, source, space, progress: bool):
    """Per class of `source` the lowest-CE correctly classified image (`select_references`,
    streamed over the split); a class without a correct image, e.g. under a weak model, gets
    no reference.

    Returns:
        (references in the model's space (K', H, W, 3), classes (K',), CE (K',), source
        indices (K',)).
    """
    loss = lambda logits, labels: cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    classes, ce, index = lowest_loss_correct(source, fn, params, loss,
                                             prepare=space.from_pixels, progress=progress)
    if len(classes) == 0:
        raise ValueError("no reference image: the model classifies none of the reference "
                         "images correctly")
    images, _ = source.get(index)
    return np.asarray(space.from_pixels(images)), classes, ce, index


def _attack_targets(labels, reference_classes, seed: int) -> np.ndarray:
    """Per clean image a uniformly drawn reference class other than its label: the class
    k steps after the label (k uniform in 1..n-1) among the n reference classes, so with
    references of every class 0..n-1 it is `(label + k) % n`.

    Shape:
        labels (N,), reference_classes (n,) -> (N,) int.
    """
    classes = np.sort(np.asarray(reference_classes))
    if len(classes) < 2:
        raise ValueError(f"the optimisation attack needs references of at least two classes "
                         f"(a target other than the label), got classes {classes.tolist()}")
    k = np.random.default_rng(seed).integers(1, len(classes), len(labels))
    return classes[(np.searchsorted(classes, labels) + k) % len(classes)]


def detect_table(summaries: dict) -> str:
    """Markdown table of detection summaries (label -> `detect_model_run` result)."""
    rows = []
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    for label, s in summaries.items():
        for name, e in s["attacks"].items():
            rows.append([label, name, f"{100 * e['attack_success']:.0f}%",
                         f"{s['n_clean']} / {e['n_adversarial']}", fmt(e.get("auroc")),
                         fmt(e.get("accuracy")),
                         fmt(e.get("auroc_by_features", {}).get("logits")),
                         fmt(e.get("auroc_by_features", {}).get("curve")),
                         fmt(e.get("auroc_barrier_max"))])
    return markdown_table(["model", "attack", "attack success", "clean / adversarial",
                           "AUROC", "accuracy", "AUROC logits only", "AUROC curve only",
                           "AUROC max loss alone"], rows)


def _write_detect_tables(run, model, summary, roc):
    from lst_jax.plots.connectivity import roc_curves

    run.write_text("tables.md", detect_table({model: summary}))
    if roc:
        roc_curves(roc, run.path("figures/roc.png"), title=f"{model}: adversarial detection")

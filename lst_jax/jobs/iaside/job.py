"""The I-ASIDE job: one resumable run directory per model, and the multi-model comparison
behind `lst-jax iaside`.

`iaside_model_run(model, config, root)` is the per-model unit (the `profile` command composes
it): its directory `root/<model>-<hash>` is keyed by the model name, its checkpoint digest,
the data source and the full resolved `IasideConfig`, so

- the same request again returns the stored result without loading the model;
- an interrupted run resumes: every finished block of coalitions is one `.npz` written
  atomically (`blocks/b<block>.npz`), a re-run computes only the missing blocks and gives
  the same numbers as an uninterrupted run;
- a different config (or model, checkpoint, data) is a different directory; the same
  directory with different images (e.g. a folder whose files changed) is refused.

Layout of a per-model run: `manifest.json` (config, digests, versions, layout),
`blocks/b*.npz` (coalitions, per-image log-probabilities, seconds), `values.npz`
(coalitions, per-coalition values, log-probabilities, Shapley values, distribution, image
indices, labels) and `result.json` (the scalar results).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from lst_jax.data.reference import DATA_KINDS, DataRef, check_data_shape, open_images
from lst_jax.jobs.lst.tables import model_label
from lst_jax.jobs.rundir import RunDir, config_digest, markdown_table
from lst_jax.parallel import distributed as dist
from lst_jax.spectral.bands import check_square_side
from lst_jax.spectral.config import SpectralConfig, check_choice
from lst_jax.spectral.importance import coalitions_for, importance_statistics, spectral_importance
from lst_jax.spectral.values import DEFAULT_BLOCK

MAX_SEED = 2 ** 32        # the key is jax.random.key(seed): 32-bit seeds are kept whole

MAX_DEFAULT_K = 1000      # [ours] K = 1000, or every image of smaller data sets


@dataclasses.dataclass(frozen=True)
class IasideConfig(SpectralConfig):
    """`SpectralConfig` plus the data and the seed: everything that changes a per-model
    result.

    Attributes:
        k: images per coalition (default None: every image of the split, at most 1000;
            resolved before the run is keyed).
        data: the kind of data (`lst_jax.data.reference.DATA_KINDS`): "digits" (shipped),
            "cifar10", "imagenet2012" (prepared tfds data), "folder" (class subfolders, or
            flat with a label) or "photos" (labelled by each model's own prediction).
        split: data split (default: the source's test / validation split).
        seed: the image subset (`default_rng(seed)`) and the key of the method,
            `jax.random.key(seed)` (pairings, noise, permutations, bootstrap; reference 42).
    """

    data: str = "digits"
    split: str | None = None
    seed: int = 42

    def __post_init__(self):
        super().__post_init__()
        check_choice("data", self.data, DATA_KINDS)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2^32), got {self.seed!r}")
        if self.split is not None and not isinstance(self.split, str):
            raise ValueError(f"split must be a string or None, got {self.split!r}")

    def key(self):
        """The method's key, `jax.random.key(seed)`."""
        import jax

        return jax.random.key(self.seed)

    def spectral(self) -> SpectralConfig:
        """The method's settings alone (k included; the seed is the job's)."""
        names = [f.name for f in dataclasses.fields(SpectralConfig)]
        return SpectralConfig(**{n: getattr(self, n) for n in names})


def data_digest(images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> str:
    """sha256 of the images, labels and source indices (detects changed data)."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(images, np.float32), np.asarray(labels, np.int32),
              np.asarray(index, np.int64)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class _BlockFiles:
    """`BlockStore` over `blocks/b<block>.npz` of a run directory."""

    def __init__(self, run: RunDir, coalitions: np.ndarray, block_size: int):
        self.run, self.coalitions, self.block_size = run, coalitions, block_size

    @staticmethod
    def name(block: int) -> str:
        return f"blocks/b{block:05d}.npz"

    def load(self, block: int):
        if not self.run.exists(self.name(block)):
            return None
        z = self.run.load_npz(self.name(block))
        s = block * self.block_size
        want = self.coalitions[s:s + self.block_size]
        if not np.array_equal(z["coalitions"], want):
            raise ValueError(f"{self.run.path(self.name(block))} holds other coalitions than "
                             "this run's plan; the directory was written by other code")
        return z["log_probs"]

    def save(self, block, coalitions, log_probs, seconds):
        self.run.save_npz(self.name(block), coalitions=coalitions, log_probs=log_probs,
                          seconds=np.float64(seconds))

    def seconds(self, n_blocks: int) -> float:
        return float(sum(float(self.run.load_npz(self.name(b))["seconds"])
                         for b in range(n_blocks)))


def data_ref(config: IasideConfig, data=None, *, data_dir=None, folder=None,
             interpolation=None) -> DataRef:
    """The `DataRef` of a run: `data` (a DataRef, whose kind and split must be the
    config's) or the config's kind and split with the legacy keyword options."""
    if data is None:
        return DataRef.of(config.data, split=config.split, data_dir=data_dir, folder=folder,
                          interpolation=interpolation)
    ref = DataRef.of(data, data_dir=data_dir, folder=folder, interpolation=interpolation)
    if (ref.kind, ref.split) != (config.data, config.split):
        raise ValueError(f"the data {ref.describe()} differ from the config's (data="
                         f"{config.data!r}, split={config.split!r}); build the config with "
                         "data=ref.kind, split=ref.split")
    return ref


def run_key(model_name: str, checkpoint_digest: str, source_name: str,
            config: IasideConfig) -> dict:
    """What identifies a per-model result (hashed into its directory name)."""
    return {"model": model_name, "checkpoint_digest": checkpoint_digest,
            "source": source_name, "iaside": config.to_dict()}


def model_run_dir(root, model_name: str, key: dict) -> Path:
    """`root/<model>-<digest of key>` (`lst_jax.jobs.rundir.config_digest`)."""
    return Path(root) / f"{model_name}-{config_digest(key)}"


def load_model_result(run_dir) -> dict:
    """The stored result of a finished per-model run (`result.json` + arrays of
    `values.npz`)."""
    run = RunDir(run_dir)
    out = run.read_json("result.json")
    z = run.load_npz("values.npz")
    out.update({k: z[k] for k in ("coalitions", "values", "shapley", "shapley_se",
                                  "distribution")})
    out["distribution"] = np.asarray(out["distribution"], np.float64)
    out["run_dir"] = str(run.root)
    return out


def iaside_model_run(model_name: str, config: IasideConfig = IasideConfig(),
                     root="runs/iaside_models", *, checkpoint=None, data=None, data_dir=None,
                     folder=None, interpolation: str | None = None, mesh=None,
                     batch_size: int | None = None, memory_budget=None,
                     block_size: int = DEFAULT_BLOCK, progress: bool = True) -> dict:
    """I-ASIDE of one registry model, resumable and reusable (see the module docstring).

    Args:
        model_name: registry name (`lst-jax models`), checkpoint directory or in-memory
            model (`resolve_model`, `ModelRef.in_memory`); named in the run by its `name`.
        config: `IasideConfig`; `k=None` resolves to min(1000, images in the split).
        root: parent of the per-model run directories.
        checkpoint: where the checkpoint is.
        data: the images (`DataRef`; its kind and split are the config's); default: the
            config's kind and split with data_dir, folder, interpolation.
        mesh, batch_size, memory_budget: devices (default: all devices of this process,
            `data_mesh`) and images per device in one call (never change the numbers
            beyond round-off, so not part of the key).
        block_size: coalitions per block file of a new run (a resumed run keeps its own).

    Returns:
        dict with `model`, `label`, `distribution` (M,), `score`, `signed_score`, `shapley`,
        `shapley_se`, `values` (per coalition), `coalitions`, `K`, `M`, `fill`, `seconds`
        (compute time summed over all sessions), `config`, `checkpoint_digest`, `run_dir`;
        None on processes other than 0 of a multi-process run (call it on every process:
        the coalition blocks are split over the processes, process 0 writes the files).
    """
    from lst_jax.models.reference import resolve_model

    if not isinstance(config, IasideConfig):
        raise ValueError(f"config must be an IasideConfig, got {type(config).__name__}")
    ref = resolve_model(model_name, checkpoint)
    spec, model_name = ref.spec, ref.name
    check_square_side("the model's input", (1,) + tuple(spec.input_size))
    dref = data_ref(config, data, data_dir=data_dir, folder=folder,
                    interpolation=interpolation)
    check_data_shape(dref, spec.input_size)
    digest = ref.digest()
    source = open_images(dref, spec.input_size, resize=spec.resize,
                         labelled=dref.kind != "photos")   # photos: labelled by the model
    n = len(source)
    k = config.k if config.k is not None else min(MAX_DEFAULT_K, n)
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} images of {source.name}")
    config = dataclasses.replace(config, k=k)
    key = run_key(model_name, digest, source.name, config)
    root_dir = model_run_dir(root, model_name, key)
    main = dist.is_main_process()    # several processes: only process 0 touches root
    done = False
    if main and (root_dir / "result.json").is_file():
        have = RunDir(root_dir).read_json("manifest.json").get("config", {})
        done = {kk: have.get(kk) for kk in key} == json.loads(json.dumps(key))
    if dist.broadcast_from_main(np.uint8(done)):
        return load_model_result(root_dir) if main else None

    loaded = ref.load()
    if config.resample:      # every coalition draws its own k of all n images
        index = np.arange(n)
    else:                    # one seeded random subset, in random order (grouped in order)
        index = np.random.default_rng(config.seed).permutation(n)[:k]
    images, labels = source.get(index)
    if np.any(labels < 0):   # unlabelled images (photos): the model's own prediction
        from lst_jax.data.pool import predict_logits

        labels = predict_logits(loaded.model_fn, loaded.params, images).argmax(-1)
        labels = labels.astype(np.int32)
    if tuple(images.shape[1:]) != tuple(spec.input_size):
        raise ValueError(f"the {config.data} images are {tuple(images.shape[1:])} but "
                         f"{model_name} expects {tuple(spec.input_size)}")
    digest_images = data_digest(images, labels, index)
    def open_run():          # process 0 only; a resumed run keeps its own block size
        run = RunDir(root_dir)
        manifest = run.ensure_manifest({**key, "data_digest": digest_images}, mode="iaside",
                                       model_spec=spec, block_size=block_size, num_images=n)
        return run, int(manifest.get("block_size", block_size))

    run, block_size = dist.on_main(open_run) or (None, block_size)
    block_size = int(dist.broadcast_from_main(np.int64(block_size)))
    same = dist.broadcast_from_main(np.frombuffer(bytes.fromhex(digest_images), np.uint8))
    if bytes(same).hex() != digest_images:
        import jax

        raise ValueError(f"process {jax.process_index()} read other {config.data} images "
                         "than process 0 (data digests differ): every host needs the same "
                         "data")
    spectral, method_key = config.spectral(), config.key()
    coalitions = coalitions_for(key=method_key, config=spectral)
    store = _BlockFiles(run, coalitions, block_size) if main else None
    if mesh is None:         # every device of this process (each process its own blocks)
        import jax

        from lst_jax.parallel import data_mesh

        mesh = data_mesh(jax.local_devices() if jax.process_count() > 1 else None)
    res = spectral_importance(loaded.model_fn, loaded.params, images, labels,
                              key=method_key, config=spectral, mesh=mesh,
                              batch_size=batch_size, memory_budget=memory_budget,
                              block_size=block_size, store=store, progress=progress,
                              desc=f"I-ASIDE {model_name}")
    if not main:
        return None
    # the stored statistics are the float64 host values (the result's jax arrays are
    # float32 without x64); compute time: the blocks' times, summed over all sessions
    res = importance_statistics(res.coalitions, res.log_probs, key=method_key,
                                config=spectral)
    seconds = store.seconds(-(-len(coalitions) // block_size))
    run.save_npz("values.npz", coalitions=res.coalitions, values=res.values,
                 log_probs=res.log_probs, shapley=res.shapley, shapley_se=res.shapley_se,
                 distribution=res.distribution, image_index=index, labels=labels)
    run.write_json("result.json", {
        "model": model_name, "label": model_label(model_name), "checkpoint_digest": digest,
        "source": source.name, "config": config.to_dict(), "K": k, "M": config.num_bands,
        "fill": config.fill, "score": res.score, "signed_score": res.signed_score,
        "score_se": res.score_se, "signed_score_se": res.signed_score_se,
        "distribution": res.distribution, "shapley": res.shapley,
        "shapley_se": res.shapley_se, "num_coalitions": len(coalitions),
        "seconds": round(seconds, 3)})
    return load_model_result(root_dir)


# ------------------------------------------------------------------------------ comparison
def _pm(value: float, se, fmt: str) -> str:
    se = np.nan if se is None else float(se)
    return format(value, fmt) + (f" ± {se:.3f}" if np.isfinite(se) else "")


def results_table(results: Sequence[dict]) -> tuple[str, str]:
    """(Markdown, CSV) of per-model results: model, score, signed score (± bootstrap
    standard errors), importance per band, K, M, fill, seconds."""
    m = max(len(r["distribution"]) for r in results)
    rows = [[r["model"], _pm(r["score"], r.get("score_se"), ".3f"),
             _pm(r["signed_score"], r.get("signed_score_se"), "+.3f")]
            + [f"{v:.3f}" for v in r["distribution"]] + [""] * (m - len(r["distribution"]))
            + [r["K"], r["M"], r["fill"], f"{r['seconds']:.1f}"] for r in results]
    md = markdown_table(["model", "score", "signed score"] + [f"band {i}" for i in range(m)]
                        + ["K", "M", "fill", "seconds"], rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "score", "score_se", "signed_score", "signed_score_se"]
               + [f"band_{i}" for i in range(m)] + ["K", "M", "fill", "seconds"])
    num = lambda v: "" if v is None or not np.isfinite(v) else repr(round(float(v), 6))
    for r in results:
        dist = [num(v) for v in r["distribution"]]
        w.writerow([r["model"], num(r["score"]), num(r.get("score_se")),
                    num(r["signed_score"]), num(r.get("signed_score_se"))]
                   + dist + [""] * (m - len(dist)) + [r["K"], r["M"], r["fill"],
                                                      r["seconds"]])
    return md, buf.getvalue()


def iaside_job(models: Sequence[str], config: IasideConfig = IasideConfig(), out=None, *,
               model_root=None, progress: bool = True, **run_kw) -> dict:
    """I-ASIDE of several models side by side (`lst-jax iaside`); `models` as
    `iaside_model_run`'s `model_name` (names, checkpoint directories, in-memory models).

    Runs (or reuses) `iaside_model_run` for each model under `model_root` (default
    `<out>/models`), then writes `<out>/iaside.md`, `iaside.csv`, `summary.json` and
    `figures/iaside_distributions.png`.

    Several processes (`jax.distributed`): call it on every process; the coalition blocks
    of each model are split over the processes and process 0 writes every file (the same
    files as one process).

    Returns:
        {"out": Path, "results": [per-model dicts]} (results None on processes other than 0).
    """
    from lst_jax.plots.spectral import plot_importance

    models = list(models)
    if not models:
        raise ValueError("models must name at least one model")
    if len(set(models)) != len(models):
        raise ValueError(f"models contains duplicates: {models}")
    from lst_jax.models.reference import resolve_model

    # names and data checked before anything is written
    refs = [resolve_model(m, run_kw.get("checkpoint")) for m in models]
    specs = [r.spec for r in refs]
    names = [r.name for r in refs]
    if len(set(names)) != len(names):
        raise ValueError(f"models contains two models of the same name: {names}")
    dref = data_ref(config, run_kw.get("data"), data_dir=run_kw.get("data_dir"),
                    folder=run_kw.get("folder"), interpolation=run_kw.get("interpolation"))
    for spec in specs:
        check_data_shape(dref, spec.input_size)
    source = open_images(dref, specs[0].input_size, resize=specs[0].resize,
                         labelled=dref.kind != "photos")
    if config.k is not None and config.k > len(source):
        raise ValueError(f"k={config.k} exceeds the {len(source)} images of {source.name} "
                         "(--k must be at most that)")
    out = Path(out or Path("runs") / f"iaside_{config.data}")
    main = dist.is_main_process()    # several processes: process 0 writes, all compute
    def open_run():
        run = RunDir(out)
        run.ensure_manifest({"models": names, "iaside": config.to_dict()}, mode="iaside")
        return run

    run = dist.on_main(open_run)
    root = Path(model_root) if model_root is not None else out / "models"
    results = [iaside_model_run(r, config, root, progress=progress and main, **run_kw)
               for r in refs]
    if not main:
        return {"out": out, "results": None}
    md, table_csv = results_table(results)
    r0 = results[0]
    caption = (f"I-ASIDE spectral importance (M = {r0['M']} bands, band 0 = lowest frequency), "
               f"fill {r0['fill']}, K = {r0['K']} images; score = spectral robustness score "
               f"(beta = {r0['config']['beta']}), signed score = the same without the "
               "absolute value; ± = bootstrap standard error over the image groups; seconds "
               "= compute time.")
    run.write_text("iaside.md", md + "\n" + caption + "\n")
    run.write_text("iaside.csv", table_csv)
    run.write_json("summary.json", {"results": [
        {k: r.get(k) for k in ("model", "label", "score", "signed_score", "score_se",
                               "signed_score_se", "distribution", "shapley", "shapley_se",
                               "K", "M", "fill", "seconds", "run_dir", "checkpoint_digest")}
        for r in results]})
    plot_importance([(r["model"], r["distribution"], r["score"]) for r in results],
                    run.path("figures/iaside_distributions.png"),
                    title=f"I-ASIDE: fill {r0['fill']}, K = {r0['K']}, M = {r0['M']}")
    return {"out": run.root, "results": results}


__all__ = ["IasideConfig", "iaside_model_run", "iaside_job", "load_model_result",
           "results_table", "run_key", "model_run_dir", "data_digest", "MAX_DEFAULT_K"]

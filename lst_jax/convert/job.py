"""`lst-jax convert`: a PyTorch weights file -> an orbax checkpoint of a registry model, or of
any zoo architecture described by its options (`convert_arch_file`)."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import shlex
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lst_jax.convert.core import ConversionError, convert_state_dict
from lst_jax.convert.io import clean_state_dict, file_sha256, read_state_dict
from lst_jax.convert.shapes import CIFAR10_CLASSES
from lst_jax.models.checkpoint import save_checkpoint
from lst_jax.models.registry import REGISTRY, checkpoint_root, registry_spec
from lst_jax.utils.trees import param_count

IMAGENET_CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat",
                 285: "Egyptian cat"}


@dataclasses.dataclass
class ConversionSummary:
    """What `convert_file` did; `str()` is the CLI report."""

    name: str
    path: Path
    param_count: int
    stats_count: int
    report: dict
    check: dict

    def __str__(self):
        r, c = self.report, self.check
        lines = [f"converted {self.name} from {r['weights_file']}: {r['converted']} tensors "
                 f"(of {r['tensors_in_file']} in the file; {_dropped(r['dropped'])})"]
        lines += [f"  note: {n}" for n in r["notes"]]
        lines.append(f"parameters: {self.param_count:,}"
                     + (f" (+ {self.stats_count:,} BatchNorm statistics)" if self.stats_count
                        else ""))
        top = ", ".join(f"{k} {_class_name(k, c['dataset'])}p={p:.3f}"
                        for k, p in zip(c["top5"], c["top5_prob"]))
        lines.append(f"logits check on {c['input']}: top-5 {top}")
        lines.append(f"  logits[:5] = {np.array2string(np.asarray(c['logits_head']), precision=4)}"
                     f", logit mean {c['logit_mean']:.4f}, std {c['logit_std']:.4f}")
        lines.append("  restored checkpoint reproduces these logits exactly"
                     if c["restored_identical"] else
                     "  WARNING: the restored checkpoint gives different logits")
        lines.append(f"wrote {self.path} (metadata.json, state/)")
        return "\n".join(lines)


def _dropped(keys) -> str:
    if not keys:
        return "none dropped"
    groups: dict[str, int] = {}
    for k in keys:
        g = "num_batches_tracked" if k.endswith("num_batches_tracked") else k.split(".")[0] + ".*"
        groups[g] = groups.get(g, 0) + 1
    return "dropped " + ", ".join(f"{n} {g}" for g, n in sorted(groups.items()))


def _class_name(k: int, dataset: str) -> str:
    if dataset == "cifar10" and k < len(CIFAR10_CLASSES):
        return f"({CIFAR10_CLASSES[k]}) "
    if dataset == "imagenet" and k in IMAGENET_CATS:
        return f"({IMAGENET_CATS[k]}) "
    return ""


def check_input(spec) -> tuple[np.ndarray, str]:
    """The fixed input of the logits check: scikit-image's 'chelsea' cat photo, preprocessed
    as the model expects (ImageNet: resize 256, centre crop 224; CIFAR: resize to 32).

    Shape:
        -> (1, H, W, 3) float32 in [0, 1].
    """
    from lst_jax.data.photos import load_photos_for

    h = spec.input_size[0]
    images, _ = load_photos_for(spec, ["chelsea"])
    desc = (f"scikit-image 'chelsea' (a cat), resize {spec.resize or h}, centre crop {h}, "
            f"{spec.interpolation}")
    return images, desc


def _check_normalizer(normalizer, spec, weights):
    if normalizer is None:
        return
    want = spec.normalization
    mean, std = normalizer.get("mean"), normalizer.get("std")
    want_mean = np.zeros(3) if want.mean is None else np.asarray(want.mean)
    want_std = np.ones(3) if want.std is None else np.asarray(want.std)
    ok = (mean is not None and std is not None and mean.shape == want_mean.shape
          and std.shape == want_std.shape and np.allclose(mean, want_mean, atol=1e-6)
          and np.allclose(std, want_std, atol=1e-6))
    if not ok:
        raise ValueError(f"{weights} normalises its inputs with mean {mean}, std {std}, but "
                         f"{spec.name} normalises with {want.to_dict()}; these weights "
                         "belong to another model (or another --normalization)")


def convert_file(name: str, weights, out=None, *, overwrite: bool = False,
                 command: str | None = None) -> ConversionSummary:
    """Converts a PyTorch weights file for registry model `name` and saves the checkpoint.

    Reads the file without executing pickled code, converts it with the family's rules
    (strict: every key accounted for, every shape checked), runs the model on a fixed
    photo, writes `<out>/state` (orbax) and `<out>/metadata.json` atomically, restores the
    checkpoint and checks that it reproduces the logits bit for bit.

    Args:
        name: registry name, e.g. "resnet50-linf".
        weights: `.safetensors`, or a `torch.save` file (`.pth`, `.pt`, ...).
        out: checkpoint directory; default `<checkpoint root>/<name>`.
        overwrite: replace an existing checkpoint at `out`.

    Raises:
        ValueError: unknown name, unreadable file, a state dict that does not fit (one error
        listing every problem), or an existing output without `overwrite`. Nothing is
        written to `out` unless the conversion succeeded.
    """
    spec = registry_spec(name)
    out = Path(out) if out is not None else checkpoint_root() / spec.checkpoint
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it")
    weights = Path(weights)
    sd, notes, normalizer = _read(weights)
    _check_normalizer(normalizer, spec, weights)
    if normalizer is not None:
        notes.append("the file's input normaliser equals the registry normalisation")
    try:
        return _convert_and_save(spec, weights, sd, notes, out, command or
                                 f"lst-jax convert {name} {shlex.quote(str(weights))}")
    except ConversionError as e:
        if "mis-shaped" not in str(e):
            raise
        raise ConversionError(
            f"{e}\n  (weights of {spec.arch} with another class count or input size are not "
            f"{name}: convert them with `lst-jax convert {weights} --arch {spec.arch} "
            "--num-classes N --input-size S`, docs/models.md)") from None


def _read(weights: Path):
    sd, notes = read_state_dict(weights)
    sd, more, normalizer = clean_state_dict(sd)
    return sd, notes + more, normalizer


def convert_arch_file(weights, arch: str, *, num_classes: int | None = None,
                      input_size: int | None = None, normalization=None, labels=None,
                      name: str | None = None, out=None, layout: str = "",
                      transform_input: bool | None = None, overwrite: bool = False,
                      command: str | None = None) -> ConversionSummary:
    """Converts PyTorch weights of a zoo architecture that the registry does not name
    (`lst-jax convert WEIGHTS --arch ARCH ...`); the checkpoint's metadata.json then describes
    the model completely, so the directory is a model reference of its own
    (`lst_jax.models.reference.resolve_model`).

    Args:
        weights: `.safetensors`, or a `torch.save` file (a state dict, possibly wrapped).
        arch: a convertible architecture (`lst_jax.convert.shapes.CONVERTIBLE`).
        num_classes: classifier outputs; default: read from the weights' classifier; given,
            it must agree with them.
        input_size: side of the square input; default 224 (32 for the CIFAR WideResNets).
        normalization: "imagenet", "cifar10", "none", a `Normalization`, or None (the file's
            own input normaliser if it has one, else the family's usual one).
        labels: "imagenet", "cifar10", "digits", a file of class names (one a line, or a
            JSON list), a sequence of names, or None (inferred, see `resolve_labels`).
        name: the model's name (runs, tables); default the weights file's stem.
        out: checkpoint directory; default `<checkpoint root>/<name>`.
        layout: the file's layout where the family reads several ("torchvision" for a
            torchvision ViT).
        transform_input: GoogLeNet only: torchvision's input re-mapping (default True, as
            its pretrained weights; False for a `googlenet(num_classes=...)` of your own).

    Raises:
        ValueError: an unknown architecture, options that disagree with the weights (one
        line naming the tensor and both shapes), a state dict that does not fit, or an
        existing output without `overwrite`.
    """
    from lst_jax.convert.shapes import arch_spec

    weights = Path(weights)
    name = name or _stem(weights)
    out = Path(out) if out is not None else checkpoint_root() / name
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it")
    sd, notes, normalizer = _read(weights)
    spec, names = arch_spec(arch, sd, normalizer, num_classes=num_classes,
                            input_size=input_size, normalization=normalization,
                            labels=labels, name=name, layout=layout, weights=weights,
                            transform_input=transform_input)
    _check_normalizer(normalizer, spec, weights)
    if normalizer is not None:
        notes.append("the file's input normaliser equals the model's normalisation")
    return _convert_and_save(spec, weights, sd, notes, out, command or " ".join(
        ["lst-jax convert", shlex.quote(str(weights)), "--arch", arch]), labels=names)


def _stem(weights: Path) -> str:
    stem = weights.name.split(".")[0] or "model"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def _convert_and_save(spec, weights: Path, sd, notes, out: Path, command: str, *,
                      labels=None) -> ConversionSummary:
    name = spec.name
    model_fn = spec.build()
    converted = convert_state_dict(sd, model_fn.module, spec.input_size, layout=spec.layout)
    variables = converted.variables
    notes = notes + converted.report["notes"]

    x, desc = check_input(spec)
    logits = np.asarray(_forward(model_fn, variables, jnp.asarray(x)))[0]
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"the converted {name} gives non-finite logits on the check input")
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    top5 = np.argsort(-probs)[:5]
    check = {"input": desc, "dataset": spec.dataset, "num_classes": int(logits.shape[0]),
             "top5": top5.tolist(), "top5_prob": probs[top5].tolist(),
             "logits_head": logits[:5].tolist(), "logit_mean": float(logits.mean()),
             "logit_std": float(logits.std())}
    report = dict(converted.report, notes=notes, weights_file=weights.name)
    n_params = param_count(variables)
    n_stats = param_count(variables, "batch_stats") if "batch_stats" in variables else 0
    metadata = {
        "name": name, "arch": spec.arch, "arch_kwargs": dict(spec.arch_kwargs),
        "arch_config": _module_config(model_fn.module),
        "layout": spec.layout or "default", "num_classes": spec.num_classes,
        "dataset": spec.dataset, "input_size": list(spec.input_size),
        "normalization": spec.normalization.to_dict(), "resize": spec.resize,
        "interpolation": spec.interpolation, "label_set": spec.label_set,
        "labels": list(labels) if labels is not None else None, "source": spec.source,
        "weights_file": weights.name, "weights_sha256": file_sha256(weights),
        "conversion": {k: v for k, v in report.items() if k != "dropped"},
        "dropped_keys": report["dropped"], "logits_check": check,
        "command": command,
        "converted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "versions": _versions(),
    }
    save_checkpoint(out, variables, metadata)
    from lst_jax.models.reference import resolve_model

    # a registry model restores under its registry spec; any other from its metadata alone
    restored = resolve_model(name if name in REGISTRY else out, out).load()
    if restored.model_fn != model_fn:
        raise ValueError(f"{out}/metadata.json does not rebuild the converted model "
                         f"({restored.spec} vs {spec})")
    again = np.asarray(_forward(model_fn, restored.params, jnp.asarray(x)))[0]
    check["restored_identical"] = bool(np.array_equal(again, logits))
    return ConversionSummary(name, out, n_params, n_stats, report, check)


def _module_config(module) -> dict:
    """Every field of the Flax module (`arch_kwargs` applied): what `arch` means, for the
    record (`arch` + `arch_kwargs` rebuild the model)."""
    return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
            if f.name not in ("parent", "name") and not f.name.startswith("_")}


@functools.partial(jax.jit, static_argnums=0)
def _forward(model_fn, variables, x):
    # `model_fn` (a Classifier) is hashable: converting the same model again reuses the program.
    return model_fn(variables, x)


def _versions() -> dict:
    import importlib.metadata as md

    from lst_jax.jobs.rundir import package_versions

    out = package_versions()
    for pkg in ("torch", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out

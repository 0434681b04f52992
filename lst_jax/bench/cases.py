"""The models of `lst-jax bench`: a JAX `Classifier` with its variables, the factory of its
PyTorch twin with the same weights, and the benchmark's inputs.

- `digits_resnet`, `digits_vit`: the shipped checkpoints (`<name>-normal`) and their twins
  (`lst_jax.bench.torch_twins.digits_twin`);
- `tiny_resnet`: a 2-stage `DigitsResNet` (widths 4, 8) with random weights on the digits
  (the quick suite: programs that compile in seconds);
- `resnet50`, `deit_small` (224x224), `wrn28_10` (32x32): random weights drawn in the PyTorch
  twin (`lst_jax.bench.torch_models`, BatchNorm statistics randomised) and converted with
  `lst_jax.convert`, so both sides run the same network (speed does not depend on weights).
torch is imported only when a twin is built.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import numpy as np

DIGITS = ("digits_resnet", "digits_vit")
TINY = "tiny_resnet"   # the quick suite's model: a 2-stage DigitsResNet (4, 8), random weights
ZOO = {
    "resnet50": dict(twin="TorchResNet", kwargs=dict(block="bottleneck", layers=(3, 4, 6, 3)),
                     size=224),
    "deit_small": dict(twin="TorchViT", kwargs=dict(dim=384, depth=12, heads=6), size=224),
    "wrn28_10": dict(twin="TorchWideResNet", kwargs=dict(depth=28, widen_factor=10), size=32),
}
MODELS = DIGITS + (TINY,) + tuple(ZOO)


@dataclasses.dataclass
class Case:
    """One model of the benchmark.

    Attributes:
        name: label in the tables.
        model_fn, params: the JAX model (`Classifier`) and its variables.
        image_shape: (H, W, C).
        make_torch: `make_torch(device)` builds the PyTorch twin on `device` taking [0, 1]
            NCHW pixels (normalisation included), eval mode, no parameter gradients.
        weights: where the weights come from (for the report).
    """

    name: str
    model_fn: Any
    params: Any
    image_shape: tuple
    make_torch: Optional[Callable[[Any], Any]]
    weights: str

    def data(self, batch: int, seed: int = 0):
        """(sources, targets, labels) numpy, NHWC in [0, 1]: test digits for the digits
        models (target i is source i + batch // 2 + 1), else uniform noise labelled with the
        model's predictions."""
        if self.name in DIGITS or self.name == TINY:
            return digits_data(batch)
        rng = np.random.default_rng(seed)
        xs = rng.uniform(size=(batch,) + tuple(self.image_shape)).astype(np.float32)
        xt = rng.uniform(size=(batch,) + tuple(self.image_shape)).astype(np.float32)
        ys = np.asarray(self.forward(self.params, xs)).argmax(-1)
        return xs, xt, ys.astype(np.int32)

    @functools.cached_property
    def forward(self):
        """The jitted `model_fn` (one compilation per input shape, shared by the workloads)."""
        import jax

        return jax.jit(self.model_fn)


def digits_data(batch: int):
    """Test digits as sources; target i is source (i + batch // 2 + 1) mod batch.

    Shape:
        -> (B, 32, 32, 3) sources and targets, (B,) int32 labels.
    """
    from lst_jax.data.digits import load_digits32

    x, y = load_digits32("test")
    idx = np.arange(batch) % len(x)
    xs, ys = x[idx], y[idx].astype(np.int32)
    shift = batch // 2 + 1 if batch > 1 else 0
    return xs, np.roll(xs, -shift, axis=0), ys


def _to(module, device):
    for p in module.parameters():
        p.requires_grad_(False)
    return module.to(device).eval()


def digits_case(name: str) -> Case:
    from lst_jax.models import load_model

    m = load_model(f"{name}-normal")

    def make_torch(device=None):
        from lst_jax.bench.torch_twins import TorchNormalized, digits_twin

        return _to(TorchNormalized(digits_twin(m.model_fn.module, m.params),
                                   m.model_fn.normalization), device)

    return Case(name, m.model_fn, m.params, tuple(m.spec.input_size), make_torch,
                f"shipped checkpoint {name}-normal")


def random_variables(model_fn, image_shape, seed: int = 0, scale: float = 0.5):
    """Random variables in the structure of `model_fn.init`, drawn with numpy (no jitted
    initialisers to compile); BatchNorm variances are positive.

    Shape:
        image_shape: (H, W, C).
    """
    import jax
    import jax.numpy as jnp

    abstract = jax.eval_shape(lambda: model_fn.init(jax.random.key(0), image_shape))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        v = scale * rng.standard_normal(leaf.shape) / np.sqrt(max(1, np.prod(leaf.shape[:-1])))
        if any(getattr(k, "key", None) == "var" for k in path):
            v = 0.5 + rng.uniform(size=leaf.shape)
        return jnp.asarray(v, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def tiny_case() -> Case:
    from lst_jax.models.digits import DigitsResNet
    from lst_jax.models.wrapper import Classifier

    model_fn = Classifier(DigitsResNet(num_classes=10, widths=(4, 8)))
    params = random_variables(model_fn, (32, 32, 3))

    def make_torch(device=None):
        from lst_jax.bench.torch_twins import TorchNormalized, digits_twin

        return _to(TorchNormalized(digits_twin(model_fn.module, params),
                                   model_fn.normalization), device)

    return Case(TINY, model_fn, params, (32, 32, 3), make_torch, "random init (numpy)")


def zoo_case(name: str) -> Case:
    """Random weights drawn in the PyTorch twin (needs torch), converted to Flax."""
    import jax
    import torch

    from lst_jax.bench import torch_models as tm
    from lst_jax.bench.torch_twins import TorchNormalized
    from lst_jax.convert import convert_state_dict
    from lst_jax.models.registry import ARCHITECTURES
    from lst_jax.models.wrapper import IMAGENET_NORMALIZATION, Classifier, Normalization

    spec = ZOO[name]
    torch.manual_seed(0)
    twin = tm.randomize_(getattr(tm, spec["twin"])(**spec["kwargs"]))
    module = ARCHITECTURES[name]()
    size = spec["size"]
    norm = IMAGENET_NORMALIZATION if size == 224 else Normalization()
    params = jax.device_put(convert_state_dict(tm.state_dict_numpy(twin), module,
                                               (size, size, 3)).variables)
    return Case(name, Classifier(module, norm), params, (size, size, 3),
                lambda device=None: _to(TorchNormalized(twin, norm), device),
                "random init (PyTorch twin, converted)")


def make_case(name: str) -> Case:
    if name in DIGITS:
        return digits_case(name)
    if name in ZOO:
        return zoo_case(name)
    if name == TINY:
        return tiny_case()
    raise ValueError(f"unknown benchmark model {name!r}; choose from {', '.join(MODELS)}")

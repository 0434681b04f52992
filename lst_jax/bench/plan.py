"""The suites of `lst-jax bench`: which workloads, in which order, at which sizes.

A `Workload` names a kind (`lst`, `iaside`, `connectivity`, `hull`), a model, a dtype and its
sizes. Batch sizes are either fixed or `Fill`: on an accelerator, the largest power of two
(within [min, cap]) whose estimated memory fits a fraction of the device memory
(`memory_stats()["bytes_limit"]`; the compiled program's `memory_analysis` is recorded with the
result); on the CPU a fixed small batch.

Suites:
- `quick`: tiny sizes on a tiny digits ResNet (random weights), tens of seconds on an idle
  CPU (what the tests run);
- `device`: for a short loan of a GPU/TPU under `--budget` (default 360 s), the most important
  workloads first: LST ResNet-50 224 float32 (vs PyTorch eager and torch.compile), I-ASIDE
  ResNet-50, connectivity statistics, the hull grid, then bfloat16 variants, DeiT-S, digits;
- `full`: everything at full size, no budget by default.
"""

from __future__ import annotations

import dataclasses
from typing import Union


@dataclasses.dataclass(frozen=True)
class Fill:
    """A batch size that fills the device: the largest `min x 2^n` (at most `cap`) whose
    estimated memory fits `fraction` of the device memory.

    Attributes:
        per_example_mib: estimated device memory per example of the workload's biggest
            program (float32), MiB.
        min, cap: bounds on an accelerator (powers of two).
        cpu: the batch on the CPU.
        fraction: share of the device memory the JAX program may use (the rest is PyTorch's).
    """

    per_example_mib: float
    min: int
    cap: int
    cpu: int
    fraction: float = 0.3

    def resolve(self, memory_bytes: int | None, dtype: str = "float32") -> tuple[int, str]:
        if memory_bytes is None:
            return self.cpu, "CPU (fixed)"
        per = self.per_example_mib * 2 ** 20   # bfloat16: the float32 batch (compared at it)
        fit = int(self.fraction * memory_bytes // per)
        b = self.min
        while b * 2 <= min(fit, self.cap):
            b *= 2
        return b, (f"{self.fraction:.0%} of {memory_bytes / 2**30:.0f} GiB / "
                   f"~{per / 2**20:.0f} MiB per example -> {fit}; largest {self.min} x 2^n "
                   f"<= {self.cap}")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One row of the plan.

    Attributes:
        kind: "lst", "iaside", "connectivity" or "hull".
        model: a `lst_jax.bench.cases` model.
        dtype: "float32" or "bfloat16" (bfloat16: JAX's bfloat16 run against its float32 run).
        batch: fixed batch (LST pairs, I-ASIDE images per call, hull probes per device) or
            `Fill`.
        params: the kind's sizes (iters, reps, bands, k, pairs, points, ...).
    """

    kind: str
    model: str
    dtype: str = "float32"
    batch: Union[int, Fill] = 0
    params: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.kind} {self.model} {self.dtype}"

    def resolved(self, memory_bytes: int | None) -> tuple["Workload", str]:
        if isinstance(self.batch, Fill):
            b, why = self.batch.resolve(memory_bytes, self.dtype)
            return dataclasses.replace(self, batch=b), why
        return self, "fixed"

    def sizes(self) -> str:
        p = self.params
        if self.kind == "lst":
            return (f"batch {self.batch}, {p['iters']} iterations"
                    + (", + torch.compile" if p.get("torch_compile") else ""))
        if self.kind == "iaside":
            return f"M={p['bands']}, K={p['k']}, {self.batch} images per call"
        if self.kind == "connectivity":
            return (f"{p['pairs']} pairs, attack <= {p.get('steps', 512)} steps, "
                    f"{p['points']}-point paths")
        return f"{p['sources']} sources x {p['rounds']} rounds, {self.batch} probes per device"


def _lst(model, dtype, batch, iters=25, reps=3, compile_=False, **kw):
    return Workload("lst", model, dtype, batch, dict(iters=iters, reps=reps,
                                                     torch_compile=compile_, **kw))


def _iaside(model, dtype, batch, bands, k, reps=3):
    return Workload("iaside", model, dtype, batch, dict(bands=bands, k=k, reps=reps))


# Per-example memory estimates of the LST program (forward + input gradient + a second
# forward, float32) and of a forward pass; measured values are recorded with each result.
R50_LST = Fill(per_example_mib=220, min=8, cap=128, cpu=2)
R50_FWD = Fill(per_example_mib=60, min=20, cap=640, cpu=20)
DEIT_LST = Fill(per_example_mib=160, min=8, cap=128, cpu=2)
DIGITS_LST = Fill(per_example_mib=3, min=32, cap=1024, cpu=32)


def suite(name: str) -> list[Workload]:
    """The workloads of suite `name`, most important first (the hull grid's sources and
    outputs are distinct test digits: at most 297 / (rounds + 1) sources)."""
    if name == "quick":
        return [
            _lst("tiny_resnet", "float32", 4, iters=3, reps=1, loop_limit=False),
            _iaside("tiny_resnet", "float32", 20, bands=2, k=10, reps=1),
            Workload("connectivity", "tiny_resnet", "float32", 0,
                     dict(pairs=2, points=16, steps=40, reps=1)),
            Workload("hull", "tiny_resnet", "float32", 16, dict(sources=2, rounds=3, reps=1)),
            _lst("tiny_resnet", "bfloat16", 4, iters=3, reps=1),
        ]
    if name == "device":
        return [
            _lst("resnet50", "float32", R50_LST, compile_=True, loop_limit=False),
            _iaside("resnet50", "float32", R50_FWD, bands=6, k=100),
            Workload("connectivity", "digits_resnet", "float32", 0,
                     dict(pairs=64, points=250, reps=2)),
            Workload("hull", "digits_resnet", "float32", 256,
                     dict(sources=48, rounds=5, reps=3)),
            _lst("resnet50", "bfloat16", R50_LST),
            _iaside("resnet50", "bfloat16", R50_FWD, bands=6, k=100),
            _lst("deit_small", "float32", DEIT_LST, compile_=True, loop_limit=False),
            _lst("deit_small", "bfloat16", DEIT_LST),
            _lst("digits_resnet", "float32", DIGITS_LST, compile_=True),
            _lst("digits_vit", "float32", DIGITS_LST),
            _iaside("digits_resnet", "float32", 400, bands=8, k=100),
        ]
    if name == "full":
        return [
            _lst("resnet50", "float32", R50_LST, reps=5, compile_=True, check_memory=True),
            _iaside("resnet50", "float32", R50_FWD, bands=8, k=100, reps=5),
            Workload("connectivity", "digits_resnet", "float32", 0,
                     dict(pairs=64, points=250, reps=3)),
            Workload("hull", "digits_resnet", "float32", 256,
                     dict(sources=48, rounds=5, reps=5)),
            _lst("resnet50", "bfloat16", R50_LST, reps=5),
            _iaside("resnet50", "bfloat16", R50_FWD, bands=8, k=100, reps=5),
            _lst("deit_small", "float32", DEIT_LST, reps=5, compile_=True),
            _lst("deit_small", "bfloat16", DEIT_LST, reps=5),
            _iaside("deit_small", "float32", R50_FWD, bands=8, k=100, reps=5),
            _lst("wrn28_10", "float32", Fill(120, 8, 256, 8), reps=5, compile_=True),
            _lst("digits_resnet", "float32", DIGITS_LST, reps=5, compile_=True,
                 check_memory=True),
            _lst("digits_vit", "float32", DIGITS_LST, reps=5, compile_=True),
            _lst("digits_resnet", "bfloat16", DIGITS_LST, reps=5),
            _iaside("digits_resnet", "float32", 400, bands=8, k=100, reps=5),
        ]
    raise ValueError(f"unknown suite {name!r}; choose from quick, device, full")


SUITES = ("quick", "device", "full")


def format_plan(plan, budget, backend: str) -> str:
    """The plan as printed by `--dry-run`: workloads in order, sizes, batch sizes, reps."""
    lines = [f"plan ({backend}; budget {'none' if budget is None else f'{budget:.0f} s'}):"]
    for i, (w, why) in enumerate(plan, 1):
        lines.append(f"  {i:2d}. {w.name:32s} {w.sizes()}; reps {w.params.get('reps')}"
                     f" (batch: {why})")
    return "\n".join(lines)

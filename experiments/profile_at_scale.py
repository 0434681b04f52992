"""Wall time of `lst-jax profile --preset quick` on three CIFAR-sized ResNet-18s (issue 18).

What a user with three PyTorch checkpoints and a folder of 32x32 images runs, timed end to end:

1. three torchvision ResNet-18s of 10 classes (one random initialisation with randomised
   BatchNorm statistics, its `fc` centred on the images and scaled to three spreads of the
   logits, so the three are confident to different degrees), saved with
   `torch.save(state_dict)` and converted with
   `lst-jax convert R.pth --arch resnet18 --num-classes 10 --input-size 32 --normalization cifar10`;
2. an ImageFolder of `--images` random 32x32 PNGs, each in the subfolder (named by the class
   index) of the class the models predict for it, so that every image is classified correctly
   (random weights classify no real image; the analyses' cost does not depend on the content);
3. `lst-jax profile --models A B C --preset quick --data folder --folder F`, run as a fresh
   process and timed (wall clock, compilation included), then run again (every unit cached).

Prints a Markdown table and writes `--out` (JSON) with the per-analysis seconds of the report.

    python experiments/profile_at_scale.py --images 400 --out docs/benchmarks/profile.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SPREADS = (6.0, 9.0, 12.0)   # std of the three models' centred logits


def make_models_and_folder(work: Path, num_images: int, seed: int = 0) -> tuple[list, Path]:
    """Three converted checkpoint directories and the labelled ImageFolder (see the module
    docstring)."""
    import torch
    from PIL import Image

    from lst_jax import cli
    from lst_jax.bench.torch_models import centred_heads, normalized_nchw, torchvision_resnet18
    from lst_jax.convert.shapes import CIFAR10_MEAN, CIFAR10_STD

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)
    net = torchvision_resnet18(10, seed)
    inputs = normalized_nchw(x.astype(np.float32) / 255, CIFAR10_MEAN, CIFAR10_STD)
    models = []
    for i, sd in enumerate(centred_heads(net, inputs, SPREADS)):
        torch.save(sd, work / f"r18_{i}.pth")
        out = work / f"cifar_r18_{i}"
        if not (out / "metadata.json").is_file():
            assert cli.main(["convert", str(work / f"r18_{i}.pth"), "--arch", "resnet18",
                             "--num-classes", "10", "--input-size", "32", "--normalization",
                             "cifar10", "--name", f"cifar_r18_{i}", "--out", str(out)]) == 0
        models.append(str(out))
    with torch.no_grad():
        pred = net(inputs).numpy()
    pred = (pred - pred.mean(0)).argmax(-1)
    folder = work / "images"
    for j, (img, c) in enumerate(zip(x, pred)):
        d = folder / str(int(c))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"img{j:04d}.png")
    return models, folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=400, help="images of the folder")
    p.add_argument("--work", default="runs/profile_at_scale",
                   help="where the weights, checkpoints, folder and profile go")
    p.add_argument("--out", default="runs/profile_at_scale.json")
    args = p.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models, folder = make_models_and_folder(work, args.images)
    counts = {d.name: len(list(d.glob("*.png"))) for d in sorted(folder.iterdir())}
    out = work / "profile"
    cmd = ["lst-jax", "profile", "--models", *models, "--preset", "quick", "--data", "folder",
           "--folder", str(folder), "--out", str(out), "--quiet"]
    env = dict(os.environ)
    walls = []
    for _ in range(2):           # a fresh run, then the same command with every unit cached
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lst_jax.cli", *cmd[1:]], check=True, env=env)
        walls.append(time.perf_counter() - t0)
    prof = json.loads((out / "profile.json").read_text())
    per = prof["timing_seconds"]
    result = {
        "command": " ".join(cmd), "images_per_class": counts,
        "wall_seconds_fresh": round(walls[0], 1), "wall_seconds_cached": round(walls[1], 1),
        "analysis_seconds": per, "images_per_analysis": prof["images_per_analysis"],
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "load_average": os.getloadavg()},
        "date": time.strftime("%Y-%m-%d"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    analyses = list(next(iter(per.values())))
    print(f"| run | wall s | {' | '.join(analyses)} |")
    print("|---|---|" + "---|" * len(analyses))
    for m, t in per.items():
        print(f"| {Path(m).name} | | {' | '.join(f'{t[a]:.1f}' for a in analyses)} |")
    print(f"| all, fresh process | {walls[0]:.1f} | |\n| all, cached | {walls[1]:.1f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

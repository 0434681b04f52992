"""A tiny resumable multi-process job for tests/parallel/test_parallel_multiprocess.py.

Same program on every process:
  - pairs of random images on a tiny CNN, cut into batches of `--batch` pairs;
  - every process agrees on the batches still missing (process 0 looks at the directory);
  - each batch is traversed data parallel on the global mesh (all devices of all processes),
    process 0 writes `batches/NNN.npz`;
  - then each process computes the target logits of its own share of pairs on its local
    devices, the shares are gathered and process 0 writes `target_logits.npz`.
`--die-at B` makes process 1 exit abruptly when it reaches batch B.

Prints one JSON line: {"process": i, "computed": [batches this launch computed]}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    from lst_jax.parallel.distributed import add_distributed_args, initialize_from_args

    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--die-at", type=int)
    add_distributed_args(p)
    args = p.parse_args(argv)
    initialize_from_args(args)           # before anything touches a device

    import jax
    import numpy as np

    from lst_jax.jobs.rundir import RunDir
    from lst_jax.parallel import (
        barrier,
        data_mesh,
        gather_shares,
        is_main_process,
        pending_items,
        process_share,
        sharded_apply,
    )
    from lst_jax.traversal import LSTConfig, level_set_traversal
    from subproc import fast_tiny_cnn

    model_fn, params = fast_tiny_cnn(0, (16, 16, 3), logit_scale=30.0)
    rng = np.random.default_rng(0)
    xs = rng.uniform(size=(args.pairs, 16, 16, 3)).astype(np.float32)
    xt = rng.uniform(size=(args.pairs, 16, 16, 3)).astype(np.float32)
    mesh = data_mesh()
    labels = np.argmax(sharded_apply(model_fn, params, xs, mesh), -1).astype(np.int32)
    cfg = LSTConfig(step_size=0.05, iters=6, pthresh=0.0, adv_pert=True, adv_step_size=2e-3)

    run = RunDir(args.out) if is_main_process() else None
    n_batches = -(-args.pairs // args.batch)
    todo = pending_items(n_batches,
                         lambda b: (run.root / "batches" / f"{b:03d}.npz").exists())
    for b in todo:
        if args.die_at == b and jax.process_index() == 1:
            print(f"process 1 exits at batch {b}", file=sys.stderr, flush=True)
            os._exit(7)
        sl = slice(b * args.batch, min((b + 1) * args.batch, args.pairs))
        res = level_set_traversal(model_fn, params, xs[sl], xt[sl], labels[sl],
                                  key=jax.random.key(1000 + b), config=cfg, mesh=mesh)
        if run is not None:
            run.save_npz(f"batches/{b:03d}.npz", images=res.images, valid=res.valid,
                         conf_source=res.record.conf_source, accepted=res.record.accepted)

    # Per-process shares on local devices; 2 examples per device in every layout.
    share = process_share(args.pairs)
    local = sharded_apply(model_fn, params, xt[share.start:share.stop],
                          data_mesh(jax.local_devices()), chunk_size=2 * jax.local_device_count())
    logits = gather_shares(local, args.pairs)
    if run is not None:
        run.save_npz("target_logits.npz", logits=logits)
    barrier("job done")
    print(json.dumps({"process": jax.process_index(), "computed": todo}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

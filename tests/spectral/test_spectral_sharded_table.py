"""I-ASIDE's table (spectra, labels) split by rows over 8 fake CPU devices (one child process):
`gather_rows` equals plain indexing bit for bit (random indices across shards, padding rows,
repeats) and its program all-gathers nothing; each device holds 1/8 of the table's bytes
(padded to a multiple of 8), `sharded_apply` keeps it split (no re-replication), neither the
table's FFT nor the units' program all-gathers anything, and the coalition values equal the
one-device ones."""


from subproc import run_python
from tolerances import reduction_atol, ulp

CHILD = r"""
import jax, jax.numpy as jnp, numpy as np
from lst_jax import parallel as par
from lst_jax.parallel import sharded as sh
from lst_jax.spectral import SpectralConfig, all_coalitions, coalition_log_probs
from lst_jax.spectral import values as V
from lst_jax.spectral.sampling import group_layout, numpy_seed

eight, one = par.data_mesh(), par.data_mesh(jax.devices()[:1])
rng = np.random.default_rng(0)
out = {"devices": jax.device_count()}

# gather_rows: 21 rows padded to 24 (rows 21-23 are padding), indices of every shard.
spec = (rng.standard_normal((24, 4, 3)) + 1j * rng.standard_normal((24, 4, 3))).astype(np.complex64)
lab = rng.integers(0, 100, size=24).astype(np.int32)
rows = par.put_batch((spec, lab), eight)
idx = rng.integers(0, 24, size=(16, 2, 5)).astype(np.int32)
idx[0, 0] = [21, 22, 23, 23, 0]                                   # padding rows, repeats
idx[1] = idx[0]
gather = jax.jit(lambda r, i: par.gather_rows(r, i, eight))
got = gather(rows, par.put_batch(idx, eight))
hlo = gather.lower(rows, par.put_batch(idx, eight)).compile().as_text()
out["gather"] = {"spectra": bool(np.array_equal(np.asarray(got[0]), spec[idx])),
                 "labels": bool(np.array_equal(np.asarray(got[1]), lab[idx])),
                 "spec": list(got[0].sharding.spec), "all_gathers": hlo.count("all-gather"),
                 "permutes": hlo.count("collective-permute")}

try:                                          # 12 indices: not a multiple of the 8 devices
    jax.jit(lambda r, i: par.gather_rows(r, i, eight))(rows, jnp.zeros((12, 5), jnp.int32))
    out["gather"]["error"] = ""
except ValueError as e:
    out["gather"]["error"] = str(e)

# The table: per-device bytes, kept split through sharded_apply's placement.
w = np.linspace(-1, 1, 16 * 16 * 3 * 5, dtype=np.float32).reshape(-1, 5) / 50
model_fn = lambda p, x: x.reshape(len(x), -1) @ p
x = rng.uniform(size=(21, 16, 16, 3)).astype(np.float32)
y = rng.integers(0, 5, size=21).astype(np.int32)
key = jax.random.key(3)
table = V.build_table(x, y, 4, key, eight)
full = par.put_replicated(V.build_table(x, y, 4, key, one)[:2], eight)

def per_device(arrays):
    return [sum(s.data.nbytes for a in arrays for s in a.addressable_shards if s.device == d)
            for d in eight.devices.flat]

out["bytes"] = {"split": per_device(table[:2]), "replicated": per_device(full),
                "rows": int(table.spectra.shape[0]),
                "specs": [list(a.sharding.spec) for a in table]}
placed = par.put_params((w, table), eight)
out["bytes"]["kept"] = placed[1].spectra is table.spectra and placed[1].labels is table.labels
cfg = SpectralConfig(num_bands=4, group_size=4)
layout = group_layout(21, 4)
block = V._block_arrays(all_coalitions(4)[:4], layout, 4, 21, cfg, numpy_seed(key))
fn = V.UnitLogProbs(model_fn, cfg.fill, cfg.post, cfg.normalize,
                    str(jax.random.key_impl(key)), eight)
units = par.put_batch(np.arange(24, dtype=np.int32), eight)
compiled = sh._apply.lower(fn, par.put_params((w, table, block), eight), units,
                           par.batch_sharding(eight)).compile()
in_specs = [list(s.spec) for s in jax.tree.leaves(compiled.input_shardings[0][0][1])]
hlo = compiled.as_text()
fft = V._row_spectra.lower(par.put_batch(np.zeros((24, 16, 16, 3), np.float32), eight),
                          eight).compile().as_text()
out["program"] = {"table_specs": in_specs[:2], "all_gathers": hlo.count("all-gather"),
                  "fft_all_gathers": fft.count("all-gather")}

# Coalition values: 8 devices (split table) == 1 device, for every fill; the table reaches
# the compiled program split (a spy on sharded_apply's call of it).
apply, seen = sh._apply, []

def spy(fn, params, x, out_sharding):
    if isinstance(fn, V.UnitLogProbs):
        seen.append([list(a.sharding.spec) for a in params[1][:2]])
    return apply(fn, params, x, out_sharding)

sh._apply = spy
out["values"] = {}
for fill in ("random", "gaussian", "zero"):
    cfg = SpectralConfig(num_bands=4, group_size=4, fill=fill)
    a = coalition_log_probs(model_fn, w, x, y, all_coalitions(4), key=key, config=cfg)
    b = coalition_log_probs(model_fn, w, x, y, all_coalitions(4), key=key, config=cfg,
                            mesh=eight, batch_size=8, block_size=5)
    out["values"][fill] = {"diff": float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                           "max": float(np.abs(np.asarray(a)).max())}
out["seen"] = seen
out["w_abs_col"] = float(np.abs(w).sum(0).max())
emit(out)
"""


def test_table_split_over_devices():
    out = run_python(CHILD, devices=8)
    assert out["devices"] == 8
    g = out["gather"]
    assert g["spectra"] and g["labels"] and g["spec"] == ["data"], g
    assert g["all_gathers"] == 0 and g["permutes"] > 0, g         # a ring, no full table
    assert g["error"].startswith("indices has leading size 12, not a multiple of the 8"), g
    b = out["bytes"]
    assert b["rows"] == 24 and b["specs"] == [["data"]] * 2 + [[]] * 2, b
    row_bytes = 16 * 16 * 3 * 8 + 4                                # complex64 spectrum + label
    assert b["split"] == [3 * row_bytes] * 8, b                    # 24 / 8 rows per device
    assert b["replicated"] == [21 * row_bytes] * 8, b
    assert b["kept"], b                                            # put_params: not re-placed
    assert out["seen"] and all(s == [["data"]] * 2 for s in out["seen"]), out["seen"]
    p = out["program"]
    assert p["table_specs"] == [["data"]] * 2, p
    assert p["all_gathers"] == 0 and p["fft_all_gathers"] == 0, p  # each device its own rows
    # The filtered images are the same bits (a gather selects; each image's FFTs are the same
    # arithmetic); the logits are a dot of 768 terms of |x w| <= |w| (x in [0, 1]) blocked
    # differently for 3 and 24 images per call, and log_softmax moves by at most twice that.
    for fill, v in out["values"].items():
        atol = 2 * reduction_atol(out["w_abs_col"], 16 * 16 * 3) + 4 * ulp(v["max"])
        assert v["diff"] <= atol, (fill, v, atol)

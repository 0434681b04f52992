"""Jobs: what the command line runs, over the pure method packages.

One package per method, the same shape for all: `lst/` (examples grid, target pool, full
evaluation with Tables 1-2), `iaside/` (spectral importance of several models),
`connectivity/` (barrier, detect, bypass, synthetic, untrained), `profile/` (all methods side
by side); `rundir.py`: the resumable run directory every job writes (manifest, atomic files,
lock, cached units). Jobs resolve models with `lst_jax.models.reference.resolve_model` and
data with `lst_jax.data.reference.DataRef`.
"""

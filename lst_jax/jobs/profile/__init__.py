"""One profile of a model across the project's methods: robustness (clean, PGD, digits-C and
mCE), Level Set Traversal, I-ASIDE and input-space connectivity, side by side over several
models, with rank correlations of every geometry signature against robustness."""

from lst_jax.jobs.profile.analyses import ANALYSES as ANALYSES
from lst_jax.jobs.profile.compare import correlations as correlations
from lst_jax.jobs.profile.compare import spearman as spearman
from lst_jax.jobs.profile.config import PRESETS as PRESETS
from lst_jax.jobs.profile.config import ProfileConfig as ProfileConfig
from lst_jax.jobs.profile.config import profile_preset as profile_preset
from lst_jax.jobs.profile.job import profile_job as profile_job

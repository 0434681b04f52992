"""The authors' I-ASIDE procedure in PyTorch lives in the package (`lst_jax.bench.torch_iaside`,
one copy shared with `lst-jax bench`); re-exported for the tests."""

from lst_jax.bench.torch_iaside import (reference_distribution, reference_filter,  # noqa: F401
                                        reference_mask, reference_shapley, reference_values)

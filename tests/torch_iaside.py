"""The authors' I-ASIDE procedure in PyTorch lives in the package (`lst_jax.bench.torch_iaside`,
one copy shared with `lst-jax bench`); re-exported for the tests."""

from lst_jax.bench.torch_iaside import (  # noqa: F401
                                        reference_distribution,
                                        reference_filter,
                                        reference_mask,
                                        reference_shapley,
                                        reference_values,
)

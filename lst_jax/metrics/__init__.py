"""Image distances of LST's Table 1: RMSE / L2, L-inf, SSIM, LPIPS-AlexNet (NHWC, [0, 1]).

All per-pair functions take two image batches `(B, H, W, C)` in [0, 1] and return `(B,)`;
`image_distances` evaluates all of them over many pairs in fixed-size jitted batches.
"""

from lst_jax.metrics.batched import AVAILABLE_METRICS as AVAILABLE_METRICS
from lst_jax.metrics.batched import TABLE1_METRICS as TABLE1_METRICS
from lst_jax.metrics.batched import image_distances as image_distances
from lst_jax.metrics.convert import lpips_params_from_torch as lpips_params_from_torch
from lst_jax.metrics.convert import lpips_params_from_torch_files as lpips_params_from_torch_files
from lst_jax.metrics.convert import lpips_params_to_torch as lpips_params_to_torch
from lst_jax.metrics.perceptual import alexnet_features as alexnet_features
from lst_jax.metrics.perceptual import load_lpips_params as load_lpips_params
from lst_jax.metrics.perceptual import lpips as lpips
from lst_jax.metrics.perceptual import lpips_distance as lpips_distance
from lst_jax.metrics.perceptual import params_digest as params_digest
from lst_jax.metrics.perceptual import save_lpips_params as save_lpips_params
from lst_jax.metrics.pixel import l2 as l2
from lst_jax.metrics.pixel import linf as linf
from lst_jax.metrics.pixel import rmse as rmse
from lst_jax.metrics.structural import ssim as ssim
from lst_jax.metrics.structural import ssim_map as ssim_map

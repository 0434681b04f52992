"""Machine, devices, versions and the float32 matmul precision of `lst-jax bench`."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform

PACKAGES = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin",
            "jax-cuda12-pjrt", "flax", "optax", "orbax-checkpoint", "numpy", "torch",
            "torchvision", "timm", "scikit-learn")


def versions() -> dict:
    """Installed versions (None when absent), without importing the packages."""
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def torch_device():
    """The PyTorch device of the benchmark: CUDA when available, else the CPU; None without
    torch."""
    try:
        import torch
    except ImportError:
        return None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_memory_bytes() -> int | None:
    """The first JAX device's memory limit (`memory_stats()["bytes_limit"]`), None when the
    backend does not report it (the CPU)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:   # backends without memory statistics
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def set_precision(tf32: bool) -> dict:
    """One float32 matmul/convolution policy for both frameworks, recorded in bench.json.

    tf32 False: full float32 on both sides (`jax_default_matmul_precision="highest"`, torch
    `allow_tf32=False` for matmuls and cuDNN); True: TF32 allowed on both ("tensorfloat32",
    `allow_tf32=True`). JAX's own default before the change is recorded too (None: the
    backend's default, which on NVIDIA GPUs lets float32 matmuls and convolutions use TF32).
    """
    import jax

    before = getattr(jax.config, "jax_default_matmul_precision", None)
    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
    out = {"policy": "tf32 allowed on both sides" if tf32 else "tf32 disallowed on both sides "
           "(full float32)", "jax_default_matmul_precision_before": before,
           "jax_default_matmul_precision": getattr(jax.config, "jax_default_matmul_precision",
                                                   None)}
    try:
        import torch
    except ImportError:
        return out
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    out.update({"torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                "torch_float32_matmul_precision": torch.get_float32_matmul_precision()})
    return out


def machine_info() -> dict:
    """Host, devices and versions (cheap; initialises the JAX backend)."""
    import jax

    from lst_jax.jobs.rundir import cpu_model_name

    info = {"cpu": cpu_model_name(), "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}",
            "jax_backend": jax.default_backend(),
            "jax_devices": [f"{d.platform}:{getattr(d, 'device_kind', '?')}"
                            for d in jax.devices()],
            "jax_device_memory_bytes": device_memory_bytes(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": versions()}
    try:
        import torch
    except ImportError:
        info["torch_device"] = None
        return info
    dev = torch_device()
    info["torch_device"] = str(dev)
    info["torch_threads"] = torch.get_num_threads()
    info["torch_cuda"] = torch.version.cuda
    if dev.type == "cuda":
        info["torch_device_name"] = torch.cuda.get_device_name(dev)
        info["torch_cudnn"] = torch.backends.cudnn.version()
    return info


def summary_line(info: dict) -> str:
    """One line: devices and versions (printed first, so that even a failing run says what
    it ran on)."""
    v = info["versions"]
    devs = sorted(set(info["jax_devices"]))
    mem = info.get("jax_device_memory_bytes")
    return (f"bench: jax {v.get('jax')} (jaxlib {v.get('jaxlib')}) on {len(info['jax_devices'])}"
            f" x {', '.join(devs)}" + (f" ({mem / 2**30:.0f} GiB)" if mem else "")
            + f"; flax {v.get('flax')}; torch {v.get('torch')} on {info.get('torch_device')}"
            + (f" ({info['torch_device_name']}, CUDA {info.get('torch_cuda')})"
               if info.get("torch_device_name") else "")
            + f"; python {v.get('python')}; {info['cpu']}, {info['cores']} cores")

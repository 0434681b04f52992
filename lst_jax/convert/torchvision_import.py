"""Importing torchvision next to the CPU build of torch that the `[torch]` extra pins.

The registry's torchvision 0.28.0 wheel (the release paired with torch 2.13.0) is built against
the default (CUDA) torch: next to `torch==2.13.0+cpu`, `import torchvision` fails with
`RuntimeError: operator torchvision::nms does not exist` while it registers the meta/autograd
kernels of its compiled operators. No CPU build of torchvision is on the package index this
project installs from. `import_torchvision` imports it with those two registration modules
replaced by empty ones: the model classes (`torchvision.models.*`), transforms and weights
enums work; only the compiled operators (`torchvision.ops.nms`, `roi_align`, `deform_conv2d`,
...) stay unusable. Converting checkpoints never needs torchvision (`torch.load` reads them).
"""

from __future__ import annotations

import sys
import types

_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def import_torchvision():
    """Returns the `torchvision` module, importable next to the CPU build of torch.

    Where torchvision imports cleanly (a matching CPU or CUDA pair), that import is used as is.
    Otherwise the two operator-registration modules are replaced by empty ones first (see the
    module docstring), then torchvision is imported; `torchvision.models` works, its compiled
    operators do not. Call it before anything else imports torchvision (e.g. `lpips`, `timm`).

    Raises:
        ImportError: torch or torchvision is not installed.
    """
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    try:
        import torchvision

        return torchvision
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]                     # the failed, half-initialised import
    for name in _REGISTRATIONS:
        sys.modules.setdefault(name, types.ModuleType(name))
    import torchvision

    return torchvision

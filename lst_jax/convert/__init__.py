"""PyTorch weights -> Flax variables for the model zoo (ResNet, WideResNet, ViT/DeiT in the
timm or torchvision layout, GoogLeNet).

    sd, notes = read_state_dict("resnet50_a1_0-14fe96d1.pth")    # or a .safetensors file
    sd, more, normalizer = clean_state_dict(sd)                    # module./model. prefixes
    variables = convert_state_dict(sd, ResNet50(), (224, 224, 3)).variables
    convert_file("resnet50-normal", "resnet50_a1_0-14fe96d1.pth")  # + checkpoint + checks
"""

from lst_jax.convert.core import ConversionError as ConversionError
from lst_jax.convert.core import Rename as Rename
from lst_jax.convert.core import Rules as Rules
from lst_jax.convert.core import abstract_variables as abstract_variables
from lst_jax.convert.core import convert_state_dict as convert_state_dict
from lst_jax.convert.core import export_state_dict as export_state_dict
from lst_jax.convert.io import clean_state_dict as clean_state_dict
from lst_jax.convert.io import read_state_dict as read_state_dict
from lst_jax.convert.rules import rules_for as rules_for
from lst_jax.utils.trees import param_count as param_count


def convert_file(*args, **kwargs):
    """See `lst_jax.convert.job.convert_file` (imported lazily: it pulls in the registry)."""
    from lst_jax.convert.job import convert_file as _convert_file

    return _convert_file(*args, **kwargs)

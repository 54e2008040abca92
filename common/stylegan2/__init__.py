"""StyleGAN2 generator with style-space and weight-offset access, discriminator, e4e/pSp encoders, checkpoint import.

See ``generator.py`` (``Generator``, ``StyleLayer``), ``discriminator.py`` (``Discriminator``), ``encoders.py`` (``Encoder4Editing``, ``GradualStyleEncoder``,
``load_e4e``, ``load_psp``) and ``checkpoints.py`` (``load_generator``, NVIDIA conversion).
"""

from common.stylegan2.checkpoints import (
    CheckpointError,
    convert_nvidia_state_dict,
    load_generator,
    load_nvidia_pkl,
    to_nvidia_state_dict,
)
from common.stylegan2.discriminator import Discriminator
from common.stylegan2.encoders import Encoder4Editing, GradualStyleEncoder, load_e4e, load_psp
from common.stylegan2.generator import Generator, StyleLayer

__all__ = [
    "CheckpointError",
    "Discriminator",
    "Encoder4Editing",
    "Generator",
    "GradualStyleEncoder",
    "StyleLayer",
    "convert_nvidia_state_dict",
    "load_e4e",
    "load_generator",
    "load_nvidia_pkl",
    "load_psp",
    "to_nvidia_state_dict",
]

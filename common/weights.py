"""Registry of the pretrained artifacts paperlab can use.

Nothing is downloaded: each artifact names its file, the folder it is looked up in, where to get it,
its licence, which projects use it, and its sha256 when known. ``resolve(name)`` returns the local
path or raises ``MissingWeightsError`` with all of that in one message; an explicit local path is
always accepted instead.

The folder is ``$PAPERLAB_WEIGHTS`` when set, else ``./pretrained`` (relative to the working folder).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserError

WEIGHTS_ENV = "PAPERLAB_WEIGHTS"


@dataclass(frozen=True)
class Artifact:
    """One pretrained file: where it goes, where it comes from, who may use it."""

    name: str
    filename: str
    source: str
    licence: str
    users: tuple[str, ...]
    sha256: str | None = None
    description: str = ""
    subdir: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Set for files that ship with the repository (under pretrained/, e.g. the face-world models): the command
    # that rebuilds the file. They are found in the repository when the weights folder lacks them.
    rebuild: str = ""


class MissingWeightsError(UserError, FileNotFoundError):
    """A pretrained file is absent; the message says where it goes and where to get it."""


REGISTRY: dict[str, Artifact] = {}


def register(artifact: Artifact) -> Artifact:
    """Add an artifact to the registry (names are unique)."""
    if artifact.name in REGISTRY and REGISTRY[artifact.name] != artifact:
        raise ValueError(f"artifact {artifact.name!r} registered twice with different fields")
    REGISTRY[artifact.name] = artifact
    return artifact


REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DIR = REPO_ROOT / "pretrained"


def weights_dir() -> Path:
    """Folder where artifacts are looked up: ``$PAPERLAB_WEIGHTS`` or ``./pretrained``."""
    return Path(os.environ.get(WEIGHTS_ENV, "pretrained"))


def default_path(name: str) -> Path:
    """Where the artifact ``name`` is expected on disk."""
    art = _get(name)
    path = weights_dir() / art.subdir / art.filename
    if art.rebuild and not path.is_file():
        shipped = SHIPPED_DIR / art.subdir / art.filename
        if shipped.is_file():
            return shipped
    return path


def _get(name: str) -> Artifact:
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY)) or "(none)"
        raise KeyError(f"unknown artifact {name!r}; known artifacts: {known}")
    return REGISTRY[name]


def describe(name: str) -> str:
    """One paragraph naming the file, where it goes, where to get it, its licence and sha256."""
    art = _get(name)
    lines = [
        f"{art.name}: {art.description}".rstrip(": "),
        f"  file:    {default_path(name)}  (or pass a local path; folder set by ${WEIGHTS_ENV})",
        f"  source:  {art.source}",
        f"  licence: {art.licence}",
        f"  sha256:  {art.sha256 or 'not published'}",
        f"  used by: {', '.join(art.users)}",
    ]
    if art.rebuild:
        lines.append(f"  ships:   {SHIPPED_DIR / art.subdir / art.filename} (with the repository)")
        lines.append(f"  rebuild: {art.rebuild}")
    lines += [f"  note:    {n}" for n in art.notes]
    return "\n".join(lines)


def resolve(name: str, path: str | os.PathLike | None = None, check_hash: bool = False) -> Path:
    """Local path of artifact ``name``: ``path`` if given, else the registry's default location.

    Raises ``MissingWeightsError`` (one message: file, folder, source, licence, sha256) when absent,
    and ``ValueError`` when ``check_hash`` is set and the sha256 differs.
    """
    art = _get(name)
    candidate = Path(path) if path is not None else default_path(name)
    if not candidate.is_file():
        raise MissingWeightsError(f"missing pretrained file {candidate}\n{describe(name)}")
    if check_hash and art.sha256:
        digest = sha256sum(candidate)
        if digest != art.sha256:
            raise ValueError(f"{candidate}: sha256 {digest} differs from the registry's {art.sha256} for {name}")
    return candidate


def missing(names: list[str]) -> list[str]:
    """Names among ``names`` whose default file is absent."""
    return [n for n in names if not default_path(n).is_file()]


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Entries. Each area adds its artifacts in its own section below (register(Artifact(...))).
# ---------------------------------------------------------------------------------------------

# --- maskcon / cgh ----------------------------------------------------------------------------
register(
    Artifact(
        name="resnet18_imagenet",
        filename="resnet18-f37072fd.pth",
        source="https://download.pytorch.org/models/resnet18-f37072fd.pth (torchvision IMAGENET1K_V1)",
        licence="BSD-3-Clause (torchvision)",
        users=("maskcon",),
        sha256=None,
        description="torchvision ResNet-18 ImageNet weights; MaskCon's official code starts from them",
    )
)

# --- stylegan2 (common/stylegan2) -------------------------------------------------------------
_SG2_NOTE = (
    "StyleMask's README links the same two files as stylegan2-ffhq-config-f_1024.pt (Drive id "
    "1I01HVu9UUyzAV7rNNnbzyFqPF0msebD7) and e4e_ffhq_encode_1024.pt (Drive id 1DexTMA3QMRNwQ3Xhdojki8UAYuY3g0uu): "
    "either copy serves, under this name (or pass its path). HyperReenact's VoxCeleb generator and e4e are other "
    "files (hyperreenact_*); all load with common.stylegan2"
)
register(
    Artifact(
        name="stylegan2_ffhq_config_f",
        filename="stylegan2-ffhq-config-f.pt",
        subdir="stylegan2",
        source="rosinality/stylegan2-pytorch README (Google Drive link there), or NVIDIA's stylegan2-ffhq-config-f.pkl "
        "converted with rosinality's convert_weight.py ({'g_ema', 'latent_avg'})",
        licence="NVIDIA Source Code License-NC (non-commercial)",
        users=("stylemask", "stylegan2"),
        description="StyleGAN2 FFHQ 1024 px config-f (channel_multiplier 2); common.stylegan2.load_generator",
        notes=(_SG2_NOTE,),
    )
)
register(
    Artifact(
        name="e4e_ffhq_encode",
        filename="e4e_ffhq_encode.pt",
        subdir="stylegan2",
        source="omertov/encoder4editing README, 'FFHQ Inversion' (Google Drive link there)",
        licence="MIT (encoder4editing); the embedded decoder is NVIDIA Source Code License-NC",
        users=("stylemask", "stylegan2"),
        description="e4e FFHQ encoder, 18 styles ({'state_dict': encoder.*/decoder.*, 'opts', 'latent_avg'}); "
        "common.stylegan2.load_e4e",
        notes=(_SG2_NOTE,),
    )
)
register(
    Artifact(
        name="psp_ffhq_encode",
        filename="psp_ffhq_encode.pt",
        subdir="stylegan2",
        source="eladrich/pixel2style2pixel README, 'StyleGAN Inversion' (Google Drive link there)",
        licence="MIT (pixel2style2pixel); the embedded decoder is NVIDIA Source Code License-NC",
        users=("stylegan2",),
        description="pSp GradualStyleEncoder FFHQ encoder, 18 styles; common.stylegan2.load_psp",
        notes=("optional: an alternative inversion encoder to e4e",),
    )
)

# --- face (common/face) -----------------------------------------------------------------------
_FACE_NOTE = "the rest of common/face runs without it (tests use random weights)"
register(
    Artifact(
        name="arcface_ir_se50",
        filename="model_ir_se50.pth",
        subdir="face",
        source="TreB1eN/InsightFace_Pytorch (IR-SE50 @ BNeck); the copy pSp/e4e/StyleMask link: Google Drive id "
        "1s5pWag4AwqQyhue6HH-M_f2WDV4IVZEl. HyperReenact's insight_face.pth (Drive 1F3wrQALEOd1Vku8ArJ_Gn4T6U3IX7Pz7) "
        "has the same keys: pass its path",
        licence="code MIT (TreB1eN); weights trained on MS1M: research use only",
        users=("stylemask", "hyperreenact", "stylegan2"),
        description="ArcFace IR-SE-50 identity network (plain state dict, loads strictly into common.face.irse.Backbone)",
        notes=("without it: identity loss, CSIM and HyperReenact's appearance features need a path; " + _FACE_NOTE,),
    )
)
register(
    Artifact(
        name="deca_model",
        filename="deca_model.tar",
        subdir="face",
        source="DECA (yfeng95/DECA) data: the deca_model.tar from the DECA README (StyleMask README Drive id "
        "1BHVJAEXscaXMj_p2rOsHYF_vaRRRHQbA, data.tar.gz); only the 'E_flame' entry is read",
        licence="DECA licence (Max Planck): non-commercial scientific research only",
        users=("stylemask", "hyperreenact"),
        description="DECA coarse encoder (ResNet-50 -> 236 FLAME parameters), torch checkpoint with E_flame/E_detail/D_detail",
        notes=("without it: shape/expression/pose losses, pose and expression metrics need a path; " + _FACE_NOTE,),
    )
)
register(
    Artifact(
        name="flame_generic_model",
        filename="generic_model.pkl",
        subdir="face",
        source="FLAME 2020 from https://flame.is.tue.mpg.de (registration and licence agreement required; "
        "not redistributable), also inside DECA's data.tar.gz",
        licence="FLAME model licence (Max Planck): RESTRICTIVE: non-commercial research only, registration "
        "required, no redistribution; read it before use",
        users=("stylemask", "hyperreenact"),
        description="FLAME head model (chumpy pickle); read without chumpy by common.face.flame.load_flame_model",
        notes=(
            "without it: FLAME vertices/landmarks (StyleMask shape, eye and mouth losses) are unavailable; "
            + _FACE_NOTE,
        ),
    )
)
register(
    Artifact(
        name="flame_landmark_embedding",
        filename="landmark_embedding.npy",
        subdir="face",
        source="DECA repository data/landmark_embedding.npy (yfeng95/DECA), also in DECA's data.tar.gz",
        licence="DECA licence (Max Planck): non-commercial scientific research only",
        users=("stylemask", "hyperreenact"),
        description="FLAME 68-landmark embedding (pickled dict in .npy), read through a restricted unpickler",
        notes=("without it: FLAME landmarks (eye/mouth losses) are unavailable",),
    )
)
register(
    Artifact(
        name="lpips_alexnet_backbone",
        filename="alexnet-owt-7be5be79.pth",
        subdir="face",
        source="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision AlexNet IMAGENET1K_V1; "
        "the 8 hex digits in the name are the start of its sha256)",
        licence="BSD-3-Clause (torchvision)",
        users=("stylemask", "hyperreenact"),
        description="LPIPS(alex) trunk; the linear heads ship in the lpips wheel",
        notes=("without it: LPIPS needs a path (tests use a random trunk)",),
    )
)
register(
    Artifact(
        name="lpips_vgg16_backbone",
        filename="vgg16-397923af.pth",
        subdir="face",
        source="https://download.pytorch.org/models/vgg16-397923af.pth (torchvision VGG16 IMAGENET1K_V1)",
        licence="BSD-3-Clause (torchvision)",
        users=("stylemask", "hyperreenact"),
        description="LPIPS(vgg) trunk; the linear heads ship in the lpips wheel",
        notes=("only for LPIPS(net='vgg')",),
    )
)
register(
    Artifact(
        name="fid_inception",
        filename="weights-inception-2015-12-05-6726825d.pth",
        subdir="face",
        source="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth (the TF FID Inception as torch-fidelity and torchmetrics use it)",
        licence="Apache-2.0 (torch-fidelity; TF Inception weights)",
        users=("stylemask", "hyperreenact"),
        description="Inception-v3 (2015-12-05) feature extractor for FID",
        notes=("without it: FID is unavailable; every other metric works",),
    )
)
register(
    Artifact(
        name="facenet_vggface2",
        filename="20180402-114759-vggface2.pt",
        subdir="face",
        source="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        licence="MIT (facenet-pytorch); weights trained on VGGFace2: research use",
        users=("stylemask", "hyperreenact"),
        description="facenet-pytorch InceptionResnetV1 (VGGFace2), an alternative identity network",
        notes=("optional; ArcFace is the default identity network",),
    )
)

# --- dferclip ---------------------------------------------------------------------------------
register(
    Artifact(
        name="openai_clip_vit_b32",
        filename="ViT-B-32.pt",
        source="https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt (OpenAI CLIP release)",
        licence="MIT (openai/CLIP)",
        users=("dferclip",),
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        description="OpenAI CLIP ViT-B/32 (TorchScript archive); DFER-CLIP fine-tunes its image encoder",
        notes=(
            "an open_clip-format state dict of the same weights (timm/vit_base_patch32_clip_224.openai) also loads;"
            " pass its path as --model.clip_weights",
        ),
    )
)
for _ds, _folds in (("dfew", 5), ("ferv39k", 1), ("mafw", 5)):
    for _k in range(1, _folds + 1):
        _suffix = f"_set{_k}" if _folds > 1 else ""
        register(
            Artifact(
                name=f"dferclip_{_ds}{_suffix}",
                filename=f"{_ds}{_suffix}_model_best.pth",
                source="Google Drive link for this dataset/fold in the README of github.com/zengqunzhao/DFER-CLIP"
                " (save the file under this name)",
                licence="not stated by the authors (research use)",
                users=("dferclip",),
                sha256=None,
                description=f"the authors' released DFER-CLIP checkpoint, {_ds.upper()}"
                + (f" fold {_k}" if _folds > 1 else ""),
                subdir="dferclip",
            )
        )

# --- stylemask --------------------------------------------------------------------------------
register(
    Artifact(
        name="stylemask_mask_network",
        filename="mask_network_1024.pt",
        source="StyleMask README, Google Drive id 1_V_MnFB8rh5qrQ3zJk00fKXb81uHjIU8",
        licence="StyleMask repository licence (see StelaBou/StyleMask)",
        users=("stylemask",),
        description="released StyleMask mask networks for FFHQ 1024 ({'step','mask_net','num_layers_control'})",
    )
)
register(
    Artifact(
        name="stylemask_validation_codes",
        filename="random_latent_codes_100.npy",
        subdir="stylemask",
        source="StelaBou/StyleMask repository, libs/configs/random_latent_codes_100.npy",
        licence="StyleMask repository licence (see StelaBou/StyleMask)",
        users=("stylemask",),
        sha256="7eccc947a27b6694a35c66fea051cf48593d87207519e6e38c11cd912d3e69d5",
        description="the official validation pairs: 200x512 z codes, 100 sources then 100 targets",
    )
)
register(
    Artifact(
        name="stylemask_ffhq_ranges",
        filename="ranges_FFHQ.npy",
        subdir="stylemask",
        source="StelaBou/StyleMask repository, libs/configs/ranges_FFHQ.npy",
        licence="StyleMask repository licence (see StelaBou/StyleMask)",
        users=("stylemask",),
        sha256="41e466b20ef6502b68dd1f13a5897770011353df0d1269bb86c4931391712ef0",
        description="54x2 min/max of DECA yaw, pitch, roll, jaw, exp0..49 over FFHQ; normalises the expression error",
    )
)

# --- hyperreenact -----------------------------------------------------------------------------
_HR_SRC = "StelaBou/HyperReenact README (Google Drive), placed in the official ./pretrained_models/"
register(
    Artifact(
        name="hyperreenact_stylegan2_voxceleb",
        filename="stylegan-voxceleb.pt",
        subdir="hyperreenact",
        source=_HR_SRC + "; Drive id 1cBwIFwq6cYIA5iR8tEvj6BIL7Ji7azIH",
        licence="see StelaBou/HyperReenact (research code; VoxCeleb-trained weights: research use)",
        users=("hyperreenact",),
        description="StyleGAN2 256 px, channel_multiplier 1, trained on VoxCeleb1 (rosinality format, key g_ema)",
    )
)
register(
    Artifact(
        name="hyperreenact_e4e_voxceleb",
        filename="e4e-voxceleb.pt",
        subdir="hyperreenact",
        source=_HR_SRC + "; Drive id 1TRATaREBi4VCMITUZV0ZO2XFU3YZKGlQ",
        licence="see StelaBou/HyperReenact (research use)",
        users=("hyperreenact",),
        description="e4e IR-SE-50 encoder for the VoxCeleb generator (key 'e', 14 styles, no latent_avg added)",
    )
)
register(
    Artifact(
        name="hyperreenact_hypernetwork",
        filename="hypernetwork.pt",
        subdir="hyperreenact",
        source=_HR_SRC + "; Drive id 1BUp6S3Wf2SeM3a-b_7mkKZyaXAxKhLrI",
        licence="see StelaBou/HyperReenact (research use)",
        users=("hyperreenact",),
        description="HyperReenact hypernetwork (keys hypernet.*, about 302.6M parameters, 1.2 GB)",
    )
)
register(
    Artifact(
        name="hyperreenact_arcface",
        filename="insight_face.pth",
        subdir="hyperreenact",
        source=_HR_SRC + "; Drive id 1F3wrQALEOd1Vku8ArJ_Gn4T6U3IX7Pz7 (same keys as model_ir_se50.pth)",
        licence="code MIT (TreB1eN); weights trained on MS1M: research use only",
        users=("hyperreenact",),
        description="ArcFace IR-SE-50 HyperReenact ships (appearance features, identity loss, CSIM)",
    )
)

# --- the face world (shipped under pretrained/faceworld/, trained here) -------------------------------------------
_FW_LICENCE = "MIT (paperlab; trained on the procedural face world, no third-party data)"
# The attribute expert before its fine-tune on degraded renders: an intermediate of the rebuild commands.
_ATTR_3000 = "runs/faceworld_experts/attributes_3000.pt"
# It fine-tuned on degraded renders (shipped until 2026-12-08): the trunk the shipped expert's head reads, and the
# expert the shipped e4e's landmark and expression terms were trained against.
_ATTR_4500 = "runs/faceworld_experts/attributes_4500.pt"
# The e4e of the default recipe, trained against it: the start of the shipped e4e's fine-tune.
_E4E_4000 = "runs/faceworld_e4e/e4e_4000.pt"
register(
    Artifact(
        name="faceworld_identity",
        filename="faceworld_identity.pt",
        subdir="faceworld",
        source="trained by paperlab on the face world (common/face/faceworld_experts.py)",
        licence=_FW_LICENCE,
        users=("stylegan2", "stylemask", "hyperreenact"),
        sha256="ee0e37556ee8acb8176b0a6cad1f0e81473fb5c4bd04f875a10891adbd4c8d0c",
        description="face-world identity expert (ArcFace's interface, 56 px, 128-d, float16)",
        rebuild="python -m common.face.faceworld_experts train identity --out pretrained/faceworld/faceworld_identity.pt",
    )
)
register(
    Artifact(
        name="faceworld_generator",
        filename="faceworld_generator.pt",
        subdir="faceworld",
        source="trained by paperlab on the face world (projects/stylegan2, configs/faceworld64.yaml)",
        licence=_FW_LICENCE,
        users=("stylegan2", "stylemask", "hyperreenact", "app"),
        sha256="90da28940ad50e2f2daf060556341aa26132200f9ba18a79ef88bbb103ac9313",
        description="StyleGAN2 g_ema of face-world renders (64 px, rosinality layout {'g_ema'}, float16; "
        "8250 iterations at batch 16)",
        rebuild=(
            "python projects/stylegan2/main.py fit --config projects/stylegan2/configs/faceworld64.yaml "
            "--trainer.max_steps 8250 --model.checkpoint_every 250 && "
            "python -m projects.stylegan2.export runs/stylegan2/faceworld64 "
            "--out pretrained/faceworld/faceworld_generator.pt --g-ema-only --half"
        ),
    )
)
register(
    Artifact(
        name="faceworld_e4e",
        filename="faceworld_e4e.pt",
        subdir="faceworld",
        source="trained by paperlab on the face world (common/stylegan2/faceworld_e4e.py)",
        licence=_FW_LICENCE,
        users=("stylemask", "hyperreenact"),
        sha256="290b93562ea9d92865a030a1e1b71bb68d0be707994468038d5803a1adc3dde1",
        description="e4e encoder of face-world renders into the face-world generator's W+ (64 px, float16): e4e's "
        "recipe (4000 steps), then 2000 fine-tuning steps with the attribute expert's landmark and expression terms",
        rebuild=(
            f"python -m common.face.faceworld_experts train attributes --steps 3000 --out {_ATTR_3000} && "
            f"python -m common.stylegan2.faceworld_e4e train --attributes {_ATTR_3000} --out {_E4E_4000} && "
            f"python -m common.face.faceworld_experts train attributes --init {_ATTR_3000} --degrade 0.5 "
            f"--steps 1500 --out {_ATTR_4500} && "
            f"python -m common.stylegan2.faceworld_e4e train --init {_E4E_4000} --regression-steps 0 "
            "--finetune-steps 2000 --progressive-start none --landmark-lambda 0.3 --expression-lambda 2 "
            f"--attributes {_ATTR_4500} --out pretrained/faceworld/faceworld_e4e.pt"
        ),
    )
)
register(
    Artifact(
        name="faceworld_attributes",
        filename="faceworld_attributes.pt",
        subdir="faceworld",
        source="trained by paperlab on the face world (common/face/faceworld_experts.py)",
        licence=_FW_LICENCE,
        users=("stylemask", "hyperreenact"),
        sha256="eac4cb5adcdcaef1d3527c518cb33e585571befa2770ad6a3cbdc010ffd8b59d",
        description="face-world attribute expert (DECA encoder's interface: geometry, expression, pose, camera; "
        "float16): 3000 steps on clean renders, 1500 on blurred and noisy ones, then a two-layer head (768 wide) "
        "trained on the frozen trunk's maps of 384000 such renders",
        rebuild=(
            f"python -m common.face.faceworld_experts train attributes --steps 3000 --out {_ATTR_3000} && "
            f"python -m common.face.faceworld_experts train attributes --init {_ATTR_3000} --degrade 0.5 "
            f"--steps 1500 --out {_ATTR_4500} && "
            f"python -m common.face.faceworld_experts train attributes --init {_ATTR_4500} --head-only --depth 2 "
            "--hidden 768 --renders 384000 --epochs 8 --out pretrained/faceworld/faceworld_attributes.pt"
        ),
    )
)
register(
    Artifact(
        name="faceworld_hyperreenact",
        filename="faceworld_hyperreenact.pt",
        subdir="faceworld",
        source="trained by paperlab on the face world (projects/hyperreenact, configs/faceworld.yaml)",
        licence=_FW_LICENCE,
        users=("hyperreenact", "app"),
        sha256="88537b4c262a7c55b5697a1adccc71fb3f4c9c4bffc403982ec4b78f968eaf8a",
        description="HyperReenact hypernetwork over the face-world generator (float16, with its hyperparameters)",
        rebuild=(
            "python projects/hyperreenact/main.py fit --config projects/hyperreenact/configs/faceworld.yaml && "
            "python -m projects.hyperreenact.export --checkpoint runs/hyperreenact/faceworld "
            "--out pretrained/faceworld/faceworld_hyperreenact.pt"
        ),
    )
)

register(
    Artifact(
        name="faceworld_stylemask",
        filename="faceworld_stylemask.pt",
        subdir="faceworld",
        source="trained by paperlab on the face world (projects/stylemask, configs/faceworld.yaml, seed 0)",
        licence=_FW_LICENCE,
        users=("stylemask", "app"),
        sha256="2e2df00c87d0081ecf3b311ed9f8d10361e4b2fe3b74ced7164de206d271b793",
        description="StyleMask mask networks over the face-world generator (with the mean latent and hyperparameters)",
        rebuild="python -m projects.stylemask.faceworld train --seed 0 --out pretrained/faceworld/faceworld_stylemask.pt",
    )
)


def _main() -> None:
    """``python -m common.weights``: every artifact, and whether it is present."""
    for name in sorted(REGISTRY):
        state = "present" if default_path(name).is_file() else "missing"
        print(f"[{state}] {describe(name)}\n")


if __name__ == "__main__":
    _main()

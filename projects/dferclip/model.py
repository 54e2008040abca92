"""DFER-CLIP's network: CLIP image encoder + temporal transformer, learnable contexts + frozen CLIP text encoder.

Shapes: a clip batch is ``[B, T, 3, H, W]`` in [0, 1] (no CLIP normalisation, as the official code);
``encode_video`` gives ``[B, D]`` and ``encode_text`` ``[C, D]``, both L2-normalised, ``D`` = CLIP's
embedding width (512 for ViT-B/32); logits are ``logit_scale * cos`` (scale 100 = temperature 0.01).

Submodule names follow the official ``GenerateModel`` (``image_encoder``, ``text_encoder``,
``prompt_learner``, ``temporal_net``) so its state dict maps onto ours (see ``checkpoint.py``); inside
``image_encoder``/``text_encoder`` the keys are open_clip's, which equal OpenAI's.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch import Tensor, nn

from common.checkpoint import CheckpointError, MissingCheckpointError, check_finite, describe, read_checkpoint
from projects.dferclip.text import class_texts

# OpenAI architectures (quick-GELU; heads = width / 64 as OpenAI's checkpoints imply).
CLIP_PRESETS: dict[str, dict[str, int]] = {
    "ViT-B-32": dict(
        embed_dim=512, image_size=224, patch_size=32, vision_width=768, vision_layers=12, text_width=512, text_layers=12
    ),  # fmt: skip
    "ViT-B-16": dict(
        embed_dim=512, image_size=224, patch_size=16, vision_width=768, vision_layers=12, text_width=512, text_layers=12
    ),  # fmt: skip
    "ViT-L-14": dict(
        embed_dim=768,
        image_size=224,
        patch_size=14,
        vision_width=1024,
        vision_layers=24,
        text_width=768,
        text_layers=12,
    ),  # fmt: skip
    # Random-weight toy for tests and the CPU demo.
    "tiny": dict(
        embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=1, text_width=64, text_layers=1
    ),  # fmt: skip
}
_CLIP_DEFAULTS = dict(context_length=77, vocab_size=49408, head_width=64)


def clip_config(arch: str | Mapping[str, Any]) -> dict[str, int]:
    """Full CLIP config dict from a preset name or a (partial) dict; missing keys take ViT-B/32 text defaults."""
    if isinstance(arch, str):
        if arch not in CLIP_PRESETS:
            raise ValueError(f"unknown CLIP architecture {arch!r}; presets: {sorted(CLIP_PRESETS)} (or pass a dict)")
        cfg = dict(CLIP_PRESETS[arch])
    else:
        cfg = dict(arch)
    for k, v in _CLIP_DEFAULTS.items():
        cfg.setdefault(k, v)
    required = {"embed_dim", "image_size", "patch_size", "vision_width", "vision_layers", "text_width", "text_layers"}
    if missing := required - set(cfg):
        raise ValueError(f"CLIP config lacks {sorted(missing)}: {cfg}")
    return {k: int(v) for k, v in cfg.items()}


def build_clip(arch: str | Mapping[str, Any]) -> CLIP:
    """An open_clip ``CLIP`` with quick-GELU (OpenAI's activation) and random weights, fp32."""
    cfg = clip_config(arch)
    hw = cfg["head_width"]
    vision = CLIPVisionCfg(
        layers=cfg["vision_layers"],
        width=cfg["vision_width"],
        head_width=min(hw, cfg["vision_width"]),
        patch_size=cfg["patch_size"],
        image_size=cfg["image_size"],
    )
    text = CLIPTextCfg(
        context_length=cfg["context_length"],
        vocab_size=cfg["vocab_size"],
        width=cfg["text_width"],
        heads=max(1, cfg["text_width"] // hw),
        layers=cfg["text_layers"],
    )
    return CLIP(embed_dim=cfg["embed_dim"], vision_cfg=vision, text_cfg=text, quick_gelu=True)


def _count_blocks(sd: Mapping[str, Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def _tensor(sd: Mapping[str, Tensor], key: str, ndim: int, source: str, layout: str, name=str) -> Tensor:
    """``sd[key]`` checked to be a tensor of rank ``ndim`` with no zero-sized dimension (``layout`` names the
    expected dimensions in the message), before any size is read off it; ``name(key)`` is the key as the file
    spells it."""
    if key not in sd:
        raise CheckpointError(f"{source}: not an OpenAI-layout CLIP state dict (missing {name(key)!r})")
    t = sd[key]
    if not isinstance(t, Tensor) or t.ndim != ndim or 0 in t.shape:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise CheckpointError(f"{source}: {name(key)} has shape {shape}; expected {ndim}-D {layout}")
    return t


def clip_config_from_state_dict(
    sd: Mapping[str, Tensor], source: str = "state dict", key_names: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Read the CLIP architecture off an OpenAI-layout state dict (keys ``visual.conv1.weight``, ``ln_final.weight``...).

    As open_clip does for OpenAI files: widths from LayerNorm/conv shapes, layer counts from the block indices,
    patch size from the conv kernel, image size from the positional embedding, heads = width / 64. Every tensor
    a size is read from is checked first (rank, and agreement with the others), so a damaged file gets a
    ``CheckpointError`` naming ``source`` and the tensor instead of a model of impossible size (``key_names``:
    OpenAI key -> the key as the file spells it, for those messages).
    """
    names = key_names or {}

    def name(key: str) -> str:
        return names.get(key, key)

    if "visual.layer1.0.conv1.weight" in sd:
        raise CheckpointError(f"{source}: a ResNet CLIP; DFER-CLIP uses a ViT image encoder")
    conv = _tensor(sd, "visual.conv1.weight", 4, source, "[width, 3, patch, patch]", name)
    width, channels, ph, pw = conv.shape
    if channels != 3 or ph != pw:
        raise CheckpointError(
            f"{source}: {name('visual.conv1.weight')} has shape {tuple(conv.shape)}; expected [width, 3, patch, patch]"
        )
    pos = _tensor(sd, "visual.positional_embedding", 2, source, "[grid * grid + 1, width]", name)
    grid = round((pos.shape[0] - 1) ** 0.5)
    if grid < 1 or grid * grid + 1 != pos.shape[0] or pos.shape[1] != width:
        raise CheckpointError(
            f"{source}: {name('visual.positional_embedding')} has shape {tuple(pos.shape)}; expected [grid * grid + 1, "
            f"{width}] (a square patch grid plus the class token, width of {name('visual.conv1.weight')})"
        )
    ln = _tensor(sd, "ln_final.weight", 1, source, "[text width]", name)
    text_width = ln.shape[0]
    text_pos = _tensor(sd, "positional_embedding", 2, source, "[context length, text width]", name)
    if text_pos.shape[1] != text_width:
        raise CheckpointError(
            f"{source}: {name('positional_embedding')} has shape {tuple(text_pos.shape)}; expected [context length, "
            f"{text_width}] (the width of {name('ln_final.weight')})"
        )
    if "text_projection" in sd:
        proj = _tensor(sd, "text_projection", 2, source, "[text width, embed dim]", name)
        if proj.shape[0] != text_width:
            raise CheckpointError(
                f"{source}: {name('text_projection')} has shape {tuple(proj.shape)}; expected [{text_width}, embed dim]"
            )
    else:
        proj = _tensor(sd, "visual.proj", 2, source, "[vision width, embed dim]", name)
        if proj.shape[0] != width:
            raise CheckpointError(
                f"{source}: {name('visual.proj')} has shape {tuple(proj.shape)}; expected [{width}, embed dim]"
            )
    vocab = 49408
    if "token_embedding.weight" in sd:
        emb = _tensor(sd, "token_embedding.weight", 2, source, "[vocabulary, text width]", name)
        if emb.shape[1] != text_width:
            raise CheckpointError(
                f"{source}: {name('token_embedding.weight')} has shape {tuple(emb.shape)}; expected [vocabulary, {text_width}]"
            )
        vocab = emb.shape[0]
    return dict(
        embed_dim=int(proj.shape[1]),
        image_size=int(pw * grid),
        patch_size=int(pw),
        vision_width=int(width),
        vision_layers=_count_blocks(sd, "visual.transformer.resblocks."),
        text_width=int(text_width),
        text_layers=_count_blocks(sd, "transformer.resblocks."),
        context_length=int(text_pos.shape[0]),
        vocab_size=int(vocab),
        head_width=64,
    )


def load_clip_state_dict(path: str | Path) -> dict[str, Tensor]:
    """OpenAI-layout fp32 CLIP weights from a local file: OpenAI's TorchScript ``ViT-B-32.pt`` or a state dict.

    TorchScript archives are read by ``torch.jit.load`` (no Python unpickling), ``.safetensors`` by safetensors,
    anything else by ``torch.load(weights_only=True)``. ``module.`` prefixes and a ``state_dict`` wrapper are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingCheckpointError(f"CLIP weights file not found: {path}")
    is_script = False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            is_script = any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist())
    if is_script:
        try:
            with warnings.catch_warnings():  # OpenAI ships TorchScript; torch now warns that jit is deprecated
                warnings.simplefilter("ignore", FutureWarning)
                sd = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as e:  # noqa: BLE001 - re-raised with the file name
            raise CheckpointError(f"{path}: cannot read CLIP weights as TorchScript ({type(e).__name__}: {e})") from e
    elif path.suffix == ".safetensors":  # e.g. open_clip's HF files (safetensors comes with open_clip)
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - re-raised with the file name
            raise CheckpointError(f"{path}: cannot read CLIP weights as safetensors ({type(e).__name__}: {e})") from e
    else:
        sd = read_checkpoint(path, "CLIP weights")
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: expected a state dict of CLIP weights, got {describe(sd)}")
    out = {}
    for k, v in sd.items():
        if k in ("input_resolution", "context_length", "vocab_size") or not isinstance(v, Tensor):
            continue
        out[k.removeprefix("module.")] = v.float() if v.is_floating_point() else v
    check_finite({k: v for k, v in out.items() if not k.endswith("attn_mask")}, path)  # the causal mask is -inf
    return out


class TemporalBlock(nn.Module):
    """Pre-norm transformer block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))``; qkv has no bias, the output does."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # scale dim_head**-0.5, as the official code
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, -1))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class TemporalTransformer(nn.Module):
    """Frame features ``[B, T, D]`` -> video feature ``[B, D]`` (output at a learnable class token).

    ``cls_token`` and ``pos_embedding`` start from N(0, 1) as the official code (not 0.02); there is no final
    LayerNorm. ``num_frames`` fixes the positional table (``T <= num_frames``).
    """

    def __init__(
        self, dim: int, depth: int = 1, heads: int = 8, dim_head: int = 64, mlp_dim: int = 1024, num_frames: int = 16
    ) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_frames + 1, dim))
        self.blocks = nn.ModuleList(TemporalBlock(dim, heads, dim_head, mlp_dim) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        if t > self.num_frames:
            raise ValueError(f"clip has {t} frames; the temporal model was built for at most {self.num_frames}")
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embedding[:, : t + 1]
        for blk in self.blocks:
            x = blk(x)
        return x[:, 0]


class PromptLearner(nn.Module):
    """Learnable context vectors placed after SOS and before each class text (CoOp, class token position "end").

    Prompt ``c``: ``[SOS] ctx_1..ctx_M <text tokens> [EOT] pad`` -> ``forward() -> [C, context_length, width]``.
    ``ctx`` is ``[C, M, width]`` (class-specific) or ``[M, width]`` (shared), N(0, 0.02). The fixed token
    embeddings come from CLIP's ``token_embedding`` once, at construction (buffers ``token_prefix``/``token_suffix``).
    """

    def __init__(
        self,
        texts: list[str],
        token_embedding: nn.Embedding,
        context_length: int,
        n_ctx: int = 8,
        class_specific: bool = True,
    ) -> None:
        super().__init__()
        self.n_cls, self.n_ctx = len(texts), n_ctx
        width = token_embedding.weight.shape[1]
        ctx = torch.empty(self.n_cls, n_ctx, width) if class_specific else torch.empty(n_ctx, width)
        nn.init.normal_(ctx, std=0.02)
        self.ctx = nn.Parameter(ctx)
        prefix = "X " * n_ctx  # "X" is one BPE token; its embedding is replaced by ctx
        tok = open_clip.get_tokenizer("ViT-B-32")
        for t in texts:
            n_tok = len(tok.encode(prefix + t)) + 2
            if n_tok > context_length:
                raise ValueError(f"prompt {prefix + t!r} has {n_tok} tokens, more than context length {context_length}")
        tokenized = open_clip.tokenize([prefix + t for t in texts], context_length=context_length)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.set_token_embedding(token_embedding)

    @torch.no_grad()
    def set_token_embedding(self, token_embedding: nn.Embedding) -> None:
        """(Re)compute the fixed prefix/suffix embeddings, e.g. after loading pretrained CLIP weights."""
        dev = token_embedding.weight.device
        emb = token_embedding(self.tokenized_prompts.to(dev)).float()
        self.register_buffer("token_prefix", emb[:, :1].clone())
        self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx :].clone())

    def forward(self) -> Tensor:
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


def _fast_path_ok(transformer: nn.Module) -> bool:
    """Whether ``transformer`` is open_clip's plain ``Transformer`` of ``ResidualAttentionBlock``s whose
    attention ``run_blocks`` can evaluate itself (packed in-projection, no extra biases, no dropout)."""
    if getattr(transformer, "grad_checkpointing", False) or not getattr(transformer, "batch_first", True):
        return False
    for blk in getattr(transformer, "resblocks", ()):
        a = getattr(blk, "attn", None)
        if not isinstance(a, nn.MultiheadAttention) or hasattr(blk, "ln_1_kv") or not hasattr(blk, "ls_1"):
            return False
        if not a._qkv_same_embed_dim or a.bias_k is not None or a.add_zero_attn or (a.dropout and a.training):
            return False
    return True


def _self_attention(attn: nn.MultiheadAttention, x: Tensor, attn_mask: Tensor | None) -> Tensor:
    """``attn(x, x, x, need_weights=False)[0]`` for batch-first ``x [N, L, D]``, the input projection being one
    ``[N*L, D] x [D, 3D]`` matrix product (``nn.MultiheadAttention`` transposes ``x`` to sequence-first first,
    which on CPU makes that product L batched ones and copies q, k, v into one ``[3, L, N, D]`` buffer)."""
    n, length, dim = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(n, length, 3, heads, dim // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [N, heads, L, head_dim]
    mask = attn_mask.to(x.dtype) if attn_mask is not None else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.out_proj(out.transpose(1, 2).reshape(n, length, dim))


def run_blocks(transformer: nn.Module, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
    """open_clip's ``Transformer.forward(x [N, L, D], attn_mask)`` with ``_self_attention`` in each block (same
    maths; only the rounding of the input projection's matrix product may differ); falls back to the module's
    own forward for blocks it does not cover."""
    if not _fast_path_ok(transformer):
        return transformer(x, attn_mask=attn_mask)
    for blk in transformer.resblocks:
        x = x + blk.ls_1(_self_attention(blk.attn, blk.ln_1(x), attn_mask))
        x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
    return x


class TextEncoder(nn.Module):
    """CLIP's text tower on prompt embeddings: ``[C, L, W]`` -> ``[C, D]`` pooled at the end token (argmax id)."""

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.transformer = clip.transformer
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask.clone(), persistent=False)

    def forward(self, prompts: Tensor, tokenized: Tensor) -> Tensor:
        x = prompts + self.positional_embedding
        x = self.ln_final(run_blocks(self.transformer, x, self.attn_mask))
        x = x[torch.arange(x.shape[0], device=x.device), tokenized.argmax(dim=-1)]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


class DFERCLIP(nn.Module):
    """DFER-CLIP: ``forward(video [B, T, 3, H, W]) -> logits [B, C] = logit_scale * cos(video, class text)``.

    Trainable: ``image_encoder`` (CLIP visual, fine-tuned), ``temporal_net``, ``prompt_learner.ctx``.
    Frozen: the text tower (``text_encoder``), which still runs every forward so gradients reach the contexts.
    """

    def __init__(
        self,
        clip: CLIP,
        num_classes: int = 7,
        text_type: str = "class_descriptor",
        n_ctx: int = 8,
        class_specific_contexts: bool = True,
        temporal_layers: int = 1,
        num_frames: int = 16,
        temporal_heads: int = 8,
        temporal_dim_head: int = 64,
        temporal_mlp_dim: int = 1024,
        logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        self.texts = class_texts(num_classes, text_type)
        self.image_encoder = clip.visual
        self.text_encoder = TextEncoder(clip)
        self.prompt_learner = PromptLearner(
            self.texts, clip.token_embedding, clip.context_length, n_ctx, class_specific_contexts
        )
        dim = clip.text_projection.shape[1] if isinstance(clip.text_projection, Tensor) else clip.embed_dim
        self.temporal_net = TemporalTransformer(
            dim, temporal_layers, temporal_heads, temporal_dim_head, temporal_mlp_dim, num_frames
        )
        self.text_encoder.requires_grad_(False)

    def encode_video(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H, W]`` -> L2-normalised ``[B, D]``."""
        b, t = video.shape[:2]
        frames = self.image_encoder(video.flatten(0, 1))
        return F.normalize(self.temporal_net(frames.view(b, t, -1)), dim=-1)

    def encode_text(self) -> Tensor:
        """L2-normalised class embeddings ``[C, D]`` from the prompted text encoder."""
        return F.normalize(self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts), dim=-1)

    def forward(self, video: Tensor) -> Tensor:
        return self.logit_scale * self.encode_video(video) @ self.encode_text().t()

    def load_clip_weights(self, sd: Mapping[str, Tensor], source: str = "CLIP weights") -> None:
        """Copy an OpenAI-layout CLIP state dict into the encoders and recompute the prompt token embeddings."""
        vis = {k.removeprefix("visual."): v for k, v in sd.items() if k.startswith("visual.")}
        txt = {
            k: v
            for k, v in sd.items()
            if k.startswith(("transformer.", "ln_final.")) or k in ("positional_embedding", "text_projection")
        }
        for name, mod, part in (("visual", self.image_encoder, vis), ("text", self.text_encoder, txt)):
            try:
                mod.load_state_dict(part, strict=True)
            except RuntimeError as e:
                raise CheckpointError(f"{source}: {name} tower does not match the model: {e}") from None
        if "token_embedding.weight" not in sd:
            raise CheckpointError(f"{source}: no token_embedding.weight")
        emb = nn.Embedding.from_pretrained(sd["token_embedding.weight"].float())
        self.prompt_learner.set_token_embedding(emb)

    def param_groups(self, lr_temporal: float, lr_image: float, lr_prompt: float) -> list[dict[str, Any]]:
        """The official three learning-rate groups (text tower excluded: it is frozen)."""
        groups = [
            {"name": "temporal_net", "params": list(self.temporal_net.parameters()), "lr": lr_temporal},
            {"name": "image_encoder", "params": list(self.image_encoder.parameters()), "lr": lr_image},
            {"name": "prompt_learner", "params": list(self.prompt_learner.parameters()), "lr": lr_prompt},
        ]
        return [g for g in groups if any(p.requires_grad for p in g["params"])]

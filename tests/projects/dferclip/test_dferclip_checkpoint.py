"""Loading the authors' checkpoint format: built here from random tensors under the official key names."""

import pickle
import re

import numpy as np
import open_clip
import pytest
import torch

import __main__
from common.checkpoint import CheckpointError
from projects.dferclip.checkpoint import load_official_checkpoint, map_official_state_dict
from projects.dferclip.model import build_clip
from projects.dferclip.text import class_texts

CLIP_CFG = dict(embed_dim=48, image_size=32, patch_size=8, vision_width=64, vision_layers=2, text_width=64,
                text_layers=1)  # fmt: skip
N_CLS, N_CTX, DEPTH, FRAMES, MLP = 7, 3, 2, 6, 40


class RecorderMeter:
    """Mimics the official training-curve helper (pickled as __main__.RecorderMeter)."""

    def __init__(self, n):
        self.total_epoch, self.current_epoch = n, 3
        self.epoch_losses = np.zeros((n, 2), dtype=np.float32)
        self.epoch_accuracy = np.ones((n, 2), dtype=np.float32)


def _official_state_dict():
    """A GenerateModel-like DataParallel state dict, every tensor random, written from the official key names."""
    g = torch.Generator().manual_seed(0)
    clip = build_clip(CLIP_CFG)
    clip_sd = {k: torch.randn(v.shape, generator=g) for k, v in clip.state_dict().items()}
    sd = {f"clip_model_.{k}": v for k, v in clip_sd.items()}
    sd.update({"image_encoder." + k[len("visual.") :]: v for k, v in clip_sd.items() if k.startswith("visual.")})
    for k, v in clip_sd.items():
        if k.startswith(("transformer.", "ln_final.")) or k in ("positional_embedding", "text_projection"):
            sd["text_encoder." + k] = v
    tok = open_clip.tokenize(["X " * N_CTX + t for t in class_texts(N_CLS)])
    emb = torch.nn.functional.embedding(tok, clip_sd["token_embedding.weight"])
    sd["prompt_learner.ctx"] = torch.randn(N_CLS, N_CTX, 64, generator=g)
    sd["prompt_learner.token_prefix"] = emb[:, :1]
    sd["prompt_learner.token_suffix"] = emb[:, 1 + N_CTX :]
    d, inner = 48, 2 * 64  # dim = CLIP embed dim; 2 heads of 64
    sd["temporal_net.cls_token"] = torch.randn(1, 1, d, generator=g)
    sd["temporal_net.pos_embedding"] = torch.randn(1, FRAMES + 1, d, generator=g)
    for i in range(DEPTH):
        p = f"temporal_net.temporal_transformer.layers.{i}."
        shapes = {
            "0.fn.norm.weight": (d,), "0.fn.norm.bias": (d,), "0.fn.fn.to_qkv.weight": (3 * inner, d),
            "0.fn.fn.to_out.0.weight": (d, inner), "0.fn.fn.to_out.0.bias": (d,),
            "1.fn.norm.weight": (d,), "1.fn.norm.bias": (d,), "1.fn.fn.net.0.weight": (MLP, d),
            "1.fn.fn.net.0.bias": (MLP,), "1.fn.fn.net.3.weight": (d, MLP), "1.fn.fn.net.3.bias": (d,),
        }  # fmt: skip
        sd.update({p + k: torch.randn(s, generator=g) for k, s in shapes.items()})
    return {"module." + k: v for k, v in sd.items()}


@pytest.fixture
def official_ckpt(tmp_path, monkeypatch):
    monkeypatch.setattr(RecorderMeter, "__module__", "__main__")
    monkeypatch.setattr(__main__, "RecorderMeter", RecorderMeter, raising=False)
    sd = _official_state_dict()
    ckpt = {"epoch": 17, "state_dict": sd, "best_acc": torch.tensor(71.2), "optimizer": {"state": {}, "param_groups": [
        {"lr": 1e-2, "momentum": 0.9, "params": [0, 1]}]}, "recorder": RecorderMeter(50)}  # fmt: skip
    path = tmp_path / "model_best.pth"
    torch.save(ckpt, path)
    return path, sd


def test_official_checkpoint_loads_exact_weights(official_ckpt):
    path, sd = official_ckpt
    model, arch = load_official_checkpoint(path)
    assert arch["clip"]["vision_layers"] == 2 and arch["clip"]["embed_dim"] == 48 and arch["clip"]["patch_size"] == 8
    assert arch["clip"]["image_size"] == 32 and arch["clip"]["text_layers"] == 1
    assert (arch["num_classes"], arch["n_ctx"], arch["temporal_layers"], arch["num_frames"]) == (7, 3, 2, 6)
    assert arch["temporal_heads"] == 2 and arch["temporal_mlp_dim"] == MLP and arch["class_specific_contexts"]
    assert arch["text_type"] == "class_descriptor" and arch["epoch"] == 17 and arch["best_acc"] == pytest.approx(71.2)
    ours = model.state_dict()
    mapped = map_official_state_dict({k[len("module.") :]: v for k, v in sd.items()})
    assert set(mapped) == set(ours)  # key for key
    for k, v in mapped.items():
        assert torch.equal(ours[k], v), k
    # spot checks of the temporal mapping and the image tower
    assert torch.equal(
        model.temporal_net.blocks[1].fc2.bias,
        sd["module.temporal_net.temporal_transformer.layers.1.1.fn.fn.net.3.bias"],
    )
    assert torch.equal(model.image_encoder.conv1.weight, sd["module.clip_model_.visual.conv1.weight"])
    logits = model.eval()(torch.rand(1, 6, 3, 32, 32))
    assert logits.shape == (1, 7) and torch.isfinite(logits).all()


def test_official_checkpoint_as_lightning_module(official_ckpt):
    from projects.dferclip.checkpoint import module_from_official_checkpoint

    path, sd = official_ckpt
    module = module_from_official_checkpoint(path)
    assert module.hparams.clip_arch["vision_width"] == 64 and module.hparams.temporal_layers == DEPTH
    assert torch.equal(module.model.prompt_learner.ctx, sd["module.prompt_learner.ctx"])


def test_text_type_read_from_embeddings(tmp_path):
    sd = _official_state_dict()
    emb = sd["module.clip_model_.token_embedding.weight"]
    tok = open_clip.tokenize(["X " * N_CTX + t for t in class_texts(N_CLS, "class_names")])
    e = torch.nn.functional.embedding(tok, emb)
    sd["module.prompt_learner.token_prefix"], sd["module.prompt_learner.token_suffix"] = e[:, :1], e[:, 1 + N_CTX :]
    path = tmp_path / "names.pth"
    torch.save({"state_dict": sd}, path)
    _, arch = load_official_checkpoint(path)
    assert arch["text_type"] == "class_names"


def test_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": Evil()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: .*(print|builtins)"):
        load_official_checkpoint(path)


def test_unknown_key_is_reported():
    with pytest.raises(CheckpointError, match=r"x\.pth: unexpected keys .*temporal_net.extra"):
        map_official_state_dict({"temporal_net.extra": torch.zeros(1)}, "x.pth")


def _damaged(tmp_path, name: str, change) -> tuple:
    sd = _official_state_dict()
    change(sd)
    path = tmp_path / name
    torch.save({"state_dict": sd}, path)
    return path


@pytest.mark.parametrize(
    "name, change, words",
    [
        # a flattened conv1 once read as a 2.4M-pixel patch: refused by rank before any model is built
        ("flat.pth", lambda sd: sd.update({"module.image_encoder.conv1.weight": sd["module.image_encoder.conv1.weight"].flatten()}),
         r"image_encoder\.conv1\.weight has shape \(12288,\); expected 4-D"),
        ("rgba.pth", lambda sd: sd.update({"module.image_encoder.conv1.weight": torch.zeros(64, 4, 8, 8)}),
         r"image_encoder\.conv1\.weight has shape \(64, 4, 8, 8\); expected \[width, 3, patch, patch\]"),
        ("grid.pth", lambda sd: sd.update({"module.image_encoder.positional_embedding": torch.zeros(18, 64)}),
         r"image_encoder\.positional_embedding has shape \(18, 64\); expected \[grid \* grid \+ 1, 64\]"),
        ("noln.pth", lambda sd: sd.pop("module.text_encoder.ln_final.weight"), r"missing 'text_encoder\.ln_final\.weight'"),
        ("ctx.pth", lambda sd: sd.update({"module.prompt_learner.ctx": torch.zeros(7, 3, 5)}),
         r"prompt_learner\.ctx has shape \(7, 3, 5\); expected \[classes, contexts, 64\]"),
        ("pos.pth", lambda sd: sd.update({"module.temporal_net.pos_embedding": torch.zeros(7, 48)}),
         r"temporal_net\.pos_embedding has shape \(7, 48\); expected \[1, frames \+ 1, 48\]"),
        ("qkv.pth", lambda sd: sd.update({"module.temporal_net.temporal_transformer.layers.0.0.fn.fn.to_qkv.weight": torch.zeros(100, 48)}),
         r"to_qkv\.weight has shape \(100, 48\); expected \[3 \* inner, 48\]"),
        ("nan.pth", lambda sd: sd["module.temporal_net.cls_token"].fill_(float("nan")),
         r"NaN or Inf: temporal_net\.cls_token \(48 NaN"),
    ],
)  # fmt: skip
def test_damaged_official_checkpoint_names_file_and_tensor(tmp_path, name, change, words):
    path = _damaged(tmp_path, name, change)
    with pytest.raises(CheckpointError) as err:
        load_official_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and re.search(words, msg), msg


def test_broken_official_files_name_the_file(tmp_path, official_ckpt):
    path, _ = official_ckpt
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cut\.pth: truncated"):
        load_official_checkpoint(cut)
    other = tmp_path / "other.pth"
    torch.save({"model": {"a": 1}}, other)
    with pytest.raises(CheckpointError, match=r"other\.pth: expected the official format .*'model'"):
        load_official_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_official_checkpoint(tmp_path / "absent.pth")


def test_official_checkpoint_predicts_on_a_frame_folder(official_ckpt, tmp_path):
    from PIL import Image

    from projects.dferclip.predict import load_model, predict

    path, _ = official_ckpt
    model, frames, size = load_model(official=str(path))
    assert (frames, size) == (FRAMES, 32)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(folder / f"{i:03d}.png")
    (res,) = predict(model, [folder], frames, size, detect_faces=False, echo=False)
    assert res["input"] == str(folder) and sum(res["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert res["pred"] == max(res["probs"], key=res["probs"].get)


def test_pretrained_clip_loaded_at_fit_start_only(tmp_path):
    from projects.dferclip.module import DFERCLIPModule

    torch.manual_seed(3)
    clip = build_clip("tiny")
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in clip.state_dict().items()}}, path)
    tiny = dict(n_ctx=2, temporal_heads=2, temporal_dim_head=16, temporal_mlp_dim=64, num_frames=4)
    module = DFERCLIPModule(clip_arch="tiny", clip_weights=str(path), **tiny)
    assert not torch.equal(module.model.image_encoder.conv1.weight, clip.visual.conv1.weight)
    module.setup("fit")
    assert torch.equal(module.model.image_encoder.conv1.weight, clip.visual.conv1.weight)
    assert torch.equal(module.model.text_encoder.text_projection, clip.text_projection)
    tok = module.model.prompt_learner.tokenized_prompts
    torch.testing.assert_close(module.model.prompt_learner.token_suffix, clip.token_embedding(tok)[:, 3:])
    # a restored checkpoint wins: the file is not read again
    other = DFERCLIPModule(clip_arch="tiny", clip_weights=str(tmp_path / "absent.pt"), **tiny)
    other.on_load_checkpoint({})
    other.setup("fit")  # would raise FileNotFoundError if it tried to load
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        DFERCLIPModule(clip_arch="tiny", clip_weights=str(tmp_path / "absent.pt"), **tiny).setup("fit")
    # OpenAI's TorchScript archives (ViT-B-32.pt) are read with torch.jit.load
    torch.jit.script(clip.eval()).save(str(tmp_path / "clip_jit.pt"))
    js = DFERCLIPModule(clip_arch="tiny", clip_weights=str(tmp_path / "clip_jit.pt"), **tiny)
    js.setup("fit")
    assert torch.equal(js.model.image_encoder.conv1.weight, clip.visual.conv1.weight)
    # open_clip's safetensors files load too
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, tmp_path / "clip.safetensors")
    st = DFERCLIPModule(clip_arch="tiny", clip_weights=str(tmp_path / "clip.safetensors"), **tiny)
    st.setup("fit")
    assert torch.equal(st.model.image_encoder.conv1.weight, clip.visual.conv1.weight)

"""DFER-CLIP network: logits, text pooling, temporal block, gradient flow, optimiser groups and schedule."""

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

from projects.dferclip.model import DFERCLIP, TemporalBlock, build_clip, clip_config_from_state_dict
from projects.dferclip.module import DFERCLIPModule
from projects.dferclip.text import class_texts

TINY = dict(n_ctx=2, temporal_heads=2, temporal_dim_head=16, temporal_mlp_dim=64, num_frames=4)


def _model(**kw):
    torch.manual_seed(0)
    return DFERCLIP(build_clip("tiny"), num_classes=7, **{**TINY, **kw})


def test_logits_are_100_times_cosine():
    m = _model().eval()
    video = torch.rand(2, 4, 3, 32, 32)
    with torch.no_grad():
        logits = m(video)
        frames = m.image_encoder(video.flatten(0, 1)).view(2, 4, -1)
        v = m.temporal_net(frames)  # not normalised
        t = m.text_encoder(m.prompt_learner(), m.prompt_learner.tokenized_prompts)
        cos = torch.stack([torch.stack([(a @ b) / (a.norm() * b.norm()) for b in t]) for a in v])
    assert logits.shape == (2, 7)
    torch.testing.assert_close(logits, 100 * cos, atol=1e-4, rtol=1e-5)


def test_text_encoder_pools_at_end_token_like_clip():
    clip = build_clip("tiny").eval()
    m = DFERCLIP(clip, num_classes=7, **TINY).eval()
    tok = m.prompt_learner.tokenized_prompts
    # replacing the contexts by the embedding of the "X" placeholders gives CLIP's own text path
    with torch.no_grad():
        m.prompt_learner.ctx.copy_(clip.token_embedding(tok)[:, 1 : 1 + TINY["n_ctx"]])
        ours = m.text_encoder(m.prompt_learner(), tok)
        ref = clip.encode_text(tok)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # "X X " + descriptor: SOS, 2 placeholders, descriptor tokens, EOT at the argmax position
    assert torch.equal(tok[:, 1:3], torch.full((7, 2), tok[0, 1].item()))
    n_desc = [len(open_clip.get_tokenizer("ViT-B-32").encode(t)) for t in class_texts(7)]
    assert (tok.argmax(-1) == torch.tensor(n_desc) + 3).all()


def test_official_prompt_lengths_vit_b32():
    tok = open_clip.tokenize(["X " * 8 + t for t in class_texts(7)])
    assert (tok.argmax(-1) + 1).tolist() == [26, 31, 27, 28, 26, 27, 28]


def test_temporal_block_matches_formula():
    torch.manual_seed(1)
    blk = TemporalBlock(dim=8, heads=2, dim_head=3, mlp_dim=10)
    x = torch.randn(2, 5, 8)
    h = F.layer_norm(x, (8,), blk.norm1.weight, blk.norm1.bias)
    q, k, v = (h @ blk.qkv.weight.t()).split(6, dim=-1)
    outs = []
    for i in range(2):
        s = slice(3 * i, 3 * i + 3)
        att = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(3), dim=-1)
        outs.append(att @ v[..., s])
    x1 = x + torch.cat(outs, -1) @ blk.proj.weight.t() + blk.proj.bias
    h2 = F.layer_norm(x1, (8,), blk.norm2.weight, blk.norm2.bias)
    g = h2 @ blk.fc1.weight.t() + blk.fc1.bias
    g = 0.5 * g * (1 + torch.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))
    expected = x1 + g @ blk.fc2.weight.t() + blk.fc2.bias
    torch.testing.assert_close(blk(x), expected, atol=1e-5, rtol=1e-5)
    assert blk.qkv.bias is None and blk.proj.bias is not None


def test_temporal_init_and_frame_limit():
    m = _model(num_frames=4)
    assert m.temporal_net.pos_embedding.shape == (1, 5, 32)
    assert m.temporal_net.pos_embedding.std().item() > 0.5  # N(0, 1), not 0.02
    with pytest.raises(ValueError, match="at most 4"):
        m(torch.rand(1, 5, 3, 32, 32))


def test_gradients_reach_trainable_parts_not_text_tower():
    m = _model()
    text_before = {k: v.clone() for k, v in m.text_encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    loss = F.cross_entropy(m(torch.rand(2, 4, 3, 32, 32)), torch.tensor([0, 3]))
    loss.backward()
    for name in ("image_encoder", "temporal_net", "prompt_learner"):
        grads = [p.grad for p in getattr(m, name).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None and not p.requires_grad for p in m.text_encoder.parameters())
    opt.step()
    for k, v in m.text_encoder.state_dict().items():
        assert torch.equal(v, text_before[k]), k


def test_shared_contexts_and_text_types():
    m = _model(class_specific_contexts=False, text_type="class_names_with_context")
    assert m.prompt_learner.ctx.shape == (2, 64)
    assert m.texts[0] == "an expression of happiness."
    assert m(torch.rand(1, 4, 3, 32, 32)).shape == (1, 7)
    m0 = _model(n_ctx=0, text_type="class_names")
    assert m0(torch.rand(1, 2, 3, 32, 32)).shape == (1, 7)


def test_three_learning_rates_and_milestones():
    module = DFERCLIPModule(clip_arch="tiny", clip_weights=None, **TINY)
    cfg = module.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"temporal_net": 1e-2, "image_encoder": 1e-5, "prompt_learner": 1e-3}
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in opt.param_groups)
    assert cfg["lr_scheduler"]["interval"] == "epoch"
    n_groups = sum(len(g["params"]) for g in opt.param_groups)
    assert n_groups == sum(1 for p in module.parameters() if p.requires_grad)
    history = []
    for _ in range(50):
        history.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert history[29] == pytest.approx(1e-2) and history[30] == pytest.approx(1e-3)
    assert (
        history[39] == pytest.approx(1e-3) and history[40] == pytest.approx(1e-4) and history[49] == pytest.approx(1e-4)
    )


def test_vit_b32_shapes_read_off_state_dict():
    cfg = clip_config_from_state_dict(build_clip("tiny").state_dict())
    assert cfg == dict(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=1, text_width=64,
                       text_layers=1, context_length=77, vocab_size=49408, head_width=64)  # fmt: skip


def test_overfits_one_batch():
    torch.manual_seed(0)
    module = DFERCLIPModule(clip_arch="tiny", clip_weights=None, lr_image=1e-2, **TINY)
    opt = module.configure_optimizers()["optimizer"]
    video, label = torch.rand(4, 4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(module(video), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_text_tower_attention_equals_open_clips():
    """run_blocks (the in-projection as one matrix product) computes what open_clip's Transformer computes,
    values and the gradients that reach the prompt contexts, with the causal mask; a block it does not cover
    falls back to the module's own forward."""
    from projects.dferclip.model import run_blocks

    torch.manual_seed(0)
    clip = build_clip(dict(embed_dim=32, image_size=32, patch_size=8, vision_width=64, vision_layers=1,
                           text_width=64, text_layers=2, head_width=16)).double()  # fmt: skip
    x = torch.randn(3, 77, 64, dtype=torch.float64, requires_grad=True)
    mask = clip.attn_mask.double()
    ours = run_blocks(clip.transformer, x, mask)
    theirs = clip.transformer(x, attn_mask=mask)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    (ga,) = torch.autograd.grad(ours, x, g)
    (gb,) = torch.autograd.grad(theirs, x, g)
    torch.testing.assert_close(ga, gb)
    # the causal mask matters: token 0 sees only itself
    y = x.detach().clone()
    y[:, 1:] += 1.0
    torch.testing.assert_close(run_blocks(clip.transformer, y, mask)[:, 0], ours[:, 0].detach())
    clip.transformer.grad_checkpointing = True  # not covered: open_clip's own forward runs
    torch.testing.assert_close(run_blocks(clip.transformer, x, mask), theirs)

"""CGH model, heads, EMA teacher, aligned queues and one training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.nn.schedules import warmup_cosine
from projects.cgh.model import CGHNetwork, HypercolumnHead
from projects.cgh.module import CGHModule, param_groups

SMALL = dict(in_channels=1, width=8, global_dim=16, hyper_dim=12, mlp_hidden=32, queue_size=40, momentum=0.9)


def _batch(b=8, size=16, channels=1, n_views=2):
    views = [torch.randn(b, channels, size, size) for _ in range(n_views)]
    return views, torch.randint(0, 10, (b,)), torch.arange(b)


def test_head_shapes_32px_resnet18():
    torch.manual_seed(0)
    net = CGHNetwork("resnet18", cifar_stem=True, global_dim=128, hyper_dim=64, mlp_hidden=256).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = net.backbone.forward_stages(x, stages=("layer3", "layer4"))
    assert maps["layer3"].shape == (2, 256, 8, 8) and maps["layer4"].shape == (2, 512, 4, 4)
    assert net.hyper_head.hypercolumn([maps["layer3"], maps["layer4"]]).shape == (2, 768, 4, 4)
    out = net(x)
    assert out["g"].shape == (2, 128) and out["h"].shape == (2, 64)
    for z in out.values():
        torch.testing.assert_close(z.norm(dim=1), torch.ones(2))


def test_head_shapes_224px_resnet50():
    torch.manual_seed(0)
    net = CGHNetwork("resnet50", cifar_stem=False, global_dim=512, hyper_dim=512, mlp_hidden=4096).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        maps = net.backbone.forward_stages(x, stages=("layer3", "layer4"))
        assert maps["layer3"].shape == (1, 1024, 14, 14) and maps["layer4"].shape == (1, 2048, 7, 7)
        hc = net.hyper_head.hypercolumn([maps["layer3"], maps["layer4"]])
        assert hc.shape == (1, 3072, 7, 7)
        assert net.hyper_head.reduce[0].weight.shape == (2048, 3072, 1, 1)
        z_h = net.hyper_head([maps["layer3"], maps["layer4"]])
        z_g = net.global_head(maps["layer4"].mean(dim=(2, 3)))
    assert z_g.shape == (1, 512) and z_h.shape == (1, 512)


def test_hypercolumn_resizes_bilinearly_to_last_stage():
    head = HypercolumnHead([2, 3], hidden_dim=8, out_dim=4)
    a, b = torch.randn(1, 2, 6, 6), torch.randn(1, 3, 3, 3)
    hc = head.hypercolumn([a, b])
    torch.testing.assert_close(hc[:, :2], F.interpolate(a, size=(3, 3), mode="bilinear", align_corners=False))
    torch.testing.assert_close(hc[:, 2:], b)


def test_single_cross_term_gradient_reaches_layer3_teacher_gets_none():
    torch.manual_seed(0)
    m = CGHModule(**SMALL, loss_terms={"g2h": 1.0})
    loss, logs = m.step(_batch(), alpha=1.0)
    assert set(logs) >= {"loss_g2h"} and "loss_h2g" not in logs
    loss.backward()
    layer3 = [p.grad for p in m.student.backbone.layer3.parameters()]
    assert all(g is not None for g in layer3) and sum(g.abs().sum() for g in layer3) > 0
    assert m.student.hyper_head.reduce[0].weight.grad.abs().sum() > 0
    # the global student is not in this term: its head gets no gradient
    assert all(p.grad is None for p in m.student.global_head.parameters())
    assert all(p.grad is None and not p.requires_grad for p in m.teacher.parameters())


def test_ema_formula():
    torch.manual_seed(0)
    m = CGHModule(**SMALL)
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(torch.randn_like(p))
    t0 = {k: v.clone() for k, v in m.teacher.state_dict().items()}
    s0 = {k: v.clone() for k, v in m.student.state_dict().items()}
    m.momentum_update()
    params = dict(m.teacher.named_parameters())
    assert any(k.startswith("hyper_head.") for k in params) and any(k.startswith("global_head.") for k in params)
    for k, v in m.teacher.state_dict().items():
        if k in params:
            torch.testing.assert_close(v, 0.9 * t0[k] + 0.1 * s0[k])
        else:  # BN statistics are the teacher's own
            torch.testing.assert_close(v, t0[k])


def test_queues_wrap_around_and_stay_aligned():
    m = CGHModule(**{**SMALL, "queue_size": 8, "global_dim": 4, "hyper_dim": 3})
    ids = torch.arange(9, dtype=torch.float32)
    for chunk in ids.split(3):
        m.enqueue({"g": chunk[:, None].expand(-1, 4) + 100, "h": chunk[:, None].expand(-1, 3) + 200})
    g, h = m.queue.features("global"), m.queue.features("hyper")
    assert int(m.queue.ptr) == 1
    expected = torch.tensor([8.0, 1, 2, 3, 4, 5, 6, 7])  # item 8 wrapped into row 0
    torch.testing.assert_close(g[:, 0], expected + 100)
    torch.testing.assert_close(h[:, 0], expected + 200)
    torch.testing.assert_close(g[:, 0] - 100, h[:, 0] - 200)  # column j of both queues: the same image


def test_step_enqueues_teacher_features_of_weak_view():
    torch.manual_seed(0)
    m = CGHModule(**SMALL)
    batch = _batch(b=6)
    m.step(batch, alpha=1.0)
    with torch.no_grad():
        z_t = m.teacher(batch[0][0])  # teacher unchanged since the step; train-mode BN: same batch statistics
    torch.testing.assert_close(m.queue.features("global")[:6], z_t["g"])
    torch.testing.assert_close(m.queue.features("hyper")[:6], z_t["h"])
    assert int(m.queue.ptr) == 6


def test_warmup_mixes_infonce_and_relational_loss():
    torch.manual_seed(0)
    batch = _batch()
    vals = {}
    m = CGHModule(**SMALL)
    start = {k: v.clone() for k, v in m.state_dict().items()}
    for alpha in (0.0, 0.25, 1.0):
        m.load_state_dict(start)
        loss, logs = m.step(batch, alpha=alpha)
        vals[alpha] = (loss.item(), logs)
    logs = vals[0.25][1]
    nce = logs["loss_nce_g"] + logs["loss_nce_h"]
    rel = 0.5 * logs["loss_g2h"] + 0.5 * logs["loss_h2g"]
    assert vals[0.25][0] == pytest.approx((0.75 * nce + 0.25 * rel).item(), rel=1e-5)
    assert vals[0.0][0] == pytest.approx(nce.item(), rel=1e-5)
    assert "loss_nce_g" not in vals[1.0][1]
    assert vals[1.0][0] == pytest.approx(rel.item(), rel=1e-5)


def test_ressl_configuration_has_no_hypercolumn_branch():
    m = CGHModule(**SMALL, loss_terms={"g2g": 1.0}, hyper_layers=())
    assert m.student.hyper_head is None and m.contexts == ("g",)
    loss, logs = m.step(_batch(), alpha=1.0)
    signals = {"rel_entropy_teacher_g", "rel_entropy_student_g", "queue_cos_g"}  # collapse signals of every step
    assert set(logs) == {"loss_g2g", "loss", "alpha"} | signals
    with pytest.raises(ValueError, match="hyper_layers is empty"):
        CGHModule(**SMALL, loss_terms={"g2h": 1.0}, hyper_layers=())


def test_step_logs_relation_entropies_and_queue_similarity_by_hand():
    torch.manual_seed(0)
    m = CGHModule(**SMALL, loss_terms={"g2g": 1.0}, hyper_layers=())
    (weak, strong), _, _ = _batch()
    queue = m.queue.features("global").clone()
    with torch.no_grad():
        zt, zs = m.teacher(weak, hyper=False)["g"], m.student(strong, hyper=False)["g"]
    _, logs = m.step(([weak, strong], None, None), alpha=1.0)
    log_k = torch.log(torch.tensor(float(SMALL["queue_size"])))
    for name, z, tau in (("teacher", zt, 0.04), ("student", zs, 0.1)):
        p = torch.softmax(z @ queue.T / tau, dim=1)
        entropy = -(p * p.log()).sum(1).mean() / log_k
        assert logs[f"rel_entropy_{name}_g"] == pytest.approx(entropy.item(), rel=1e-4)
    u = F.normalize(queue, dim=1)
    cos = (u @ u.T).fill_diagonal_(0).sum() / (len(u) * (len(u) - 1))  # all 40 rows (fewer than 256)
    assert logs["queue_cos_g"] == pytest.approx(cos.item(), abs=1e-5)


def test_multicrop_local_views_train_the_global_branch():
    torch.manual_seed(0)
    m = CGHModule(**SMALL)
    views, y, idx = _batch(b=4)
    views.append(torch.randn(4, 1, 10, 10))
    loss, logs = m.step((views, y, idx), alpha=1.0)
    assert torch.isfinite(loss)


def test_optimizer_groups_and_schedule():
    m = CGHModule(**SMALL)
    groups = param_groups(m.student, 1e-4)
    assert all(p.ndim > 1 for p in groups[0]["params"]) and groups[0]["weight_decay"] == 1e-4
    assert all(p.ndim <= 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0
    bn = m.student.backbone.bn1
    assert any(p is bn.weight for p in groups[1]["params"])
    # the module's LambdaLR is common.nn.schedules.warmup_cosine(step, warm-up steps, total steps)
    assert warmup_cosine(0, 10, 100) == 0.0
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)


def test_head_bn_option_adds_bn_to_both_mlps_and_is_off_by_default():
    def bns(net):
        return [type(m).__name__ for m in (*net.global_head.mlp.modules(), *net.hyper_head.mlp.modules())]

    official = CGHNetwork("resnet18", width=8, global_dim=16, hyper_dim=12, mlp_hidden=32)
    assert "BatchNorm1d" not in bns(official)
    m = CGHModule(**SMALL, head_bn=True)
    assert bns(m.student).count("BatchNorm1d") == 2 and bns(m.teacher).count("BatchNorm1d") == 2
    loss, _ = m.step(_batch(), alpha=1.0)
    loss.backward()
    assert m.student.global_head.mlp.net[1].weight.grad is not None


def test_demo_hypercolumn_layer2_layer3_keeps_a_grid_at_32px():
    """The demo's scaling (configs/demo.yaml): with the ImageNet stem at 32 px, layer4 is 1x1, so the hypercolumn
    takes layer2 (4x4) and layer3 (2x2) on layer3's 2x2 grid; its loss trains layer2, and layer4 only through g."""
    torch.manual_seed(0)
    net = CGHNetwork(
        "resnet18",
        cifar_stem=False,
        width=8,
        hyper_layers=("layer2", "layer3"),
        global_dim=16,
        hyper_dim=12,
        mlp_hidden=32,
    )
    x = torch.randn(4, 3, 32, 32)
    maps = net.backbone.forward_stages(x, stages=("layer2", "layer3", "layer4"))
    assert maps["layer2"].shape[-2:] == (4, 4) and maps["layer3"].shape[-2:] == (2, 2)
    assert maps["layer4"].shape[-2:] == (1, 1)
    assert net.hyper_head.hypercolumn([maps["layer2"], maps["layer3"]]).shape == (4, 16 + 32, 2, 2)
    net(x)["h"].sum().backward()
    assert sum(p.grad.abs().sum() for p in net.backbone.layer2.parameters()) > 0
    assert all(p.grad is None for p in net.backbone.layer4.parameters())

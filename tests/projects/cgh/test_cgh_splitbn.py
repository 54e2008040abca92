"""Ghost BN (SplitBatchNorm2d) against a per-group computation; the single-device teacher shuffle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from projects.cgh.model import SplitBatchNorm2d, split_batchnorm_
from projects.cgh.module import CGHModule


def test_split_bn_normalises_each_group_by_hand():
    torch.manual_seed(0)
    bn = SplitBatchNorm2d(3, num_splits=4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 0.3]))
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    out = bn.train()(x)
    for g in range(4):
        xg = x[2 * g : 2 * g + 2]
        mean = xg.mean(dim=(0, 2, 3), keepdim=True)
        var = xg.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        ref = (xg - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, 3, 1, 1) + bn.bias.view(1, 3, 1, 1)
        assert torch.allclose(out[2 * g : 2 * g + 2], ref, atol=1e-5)
    # running statistics: the average of the four groups' updates (momentum 0.1, unbiased variance)
    groups = x.view(4, 2, 3, 5, 5)
    mean_ref = 0.1 * groups.mean(dim=(1, 3, 4)).mean(0)
    var_ref = 0.9 + 0.1 * groups.transpose(1, 2).reshape(4, 3, -1).var(dim=2, unbiased=True).mean(0)
    assert torch.allclose(bn.running_mean, mean_ref, atol=1e-5) and torch.allclose(bn.running_var, var_ref, atol=1e-4)
    # evaluation is plain BN with the running statistics
    plain = nn.BatchNorm2d(3).eval()
    plain.load_state_dict(bn.state_dict())
    assert torch.allclose(bn.eval()(x), plain(x), atol=1e-6)
    # a batch the splits do not divide: plain batch statistics
    y = torch.randn(6, 3, 2, 2)
    ref = F.batch_norm(y, None, None, bn.weight, bn.bias, True, 0.1, bn.eps)
    assert torch.allclose(bn.train()(y), ref, atol=1e-5)


def test_split_batchnorm_replaces_in_place_keeping_state():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
    split_batchnorm_(net, 2)
    assert isinstance(net[1], SplitBatchNorm2d) and isinstance(net[2][0], SplitBatchNorm2d)
    assert torch.all(net[1].running_mean == 0.5) and net[1].num_splits == 2


def test_module_split_bn_and_single_device_shuffle_restores_order():
    torch.manual_seed(0)
    m = CGHModule(in_channels=1, width=8, global_dim=8, hyper_dim=8, mlp_hidden=16, queue_size=32, split_bn=4)
    bns = [mod for mod in m.student.backbone.modules() if isinstance(mod, nn.BatchNorm2d)]
    assert bns and all(isinstance(b, SplitBatchNorm2d) for b in bns)
    assert all(isinstance(b, SplitBatchNorm2d) for b in m.teacher.backbone.modules() if isinstance(b, nn.BatchNorm2d))
    assert type(m.student.hyper_head.reduce[1]) is nn.BatchNorm2d  # the head's BN is plain, as in the official code
    m.eval()  # eval BN does not depend on the batch: the shuffled teacher pass must give the unshuffled rows
    x = torch.randn(8, 1, 12, 12)
    out = m.teacher_forward(x)
    with torch.no_grad():
        ref = m.teacher(x)
    assert all(torch.allclose(out[k], ref[k], atol=1e-6) for k in ref)

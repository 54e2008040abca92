import pytest
import torch
import torch.nn.functional as F
import torchvision

from common.nn.ema import ema_update_, frozen_copy
from common.nn.heads import MLPHead
from common.nn.queue import FeatureQueue
from common.nn.resnet import ResNetBackbone


@pytest.mark.parametrize("arch,dim", [("resnet18", 512), ("resnet50", 2048)])
def test_resnet_keys_match_torchvision_and_load(tmp_path, arch, dim):
    tv = getattr(torchvision.models, arch)(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    net = ResNetBackbone(arch, weights_path=path).eval()
    assert net.out_dim == dim
    tv.eval()
    x = torch.randn(2, 3, 64, 64)
    tv.fc = torch.nn.Identity()
    torch.testing.assert_close(net(x), tv(x))


def test_resnet_cifar_stem_stages_and_width():
    net = ResNetBackbone("resnet18", cifar_stem=True, in_channels=1, width=8)
    out = net.forward_stages(torch.randn(2, 1, 16, 16), ("layer2", "layer3"))
    assert set(out) == {"layer2", "layer3"}
    assert out["layer2"].shape == (2, 16, 8, 8) and out["layer3"].shape == (2, 32, 4, 4)
    assert net.stage_channels == {"layer1": 8, "layer2": 16, "layer3": 32, "layer4": 64}
    assert net(torch.randn(3, 1, 16, 16)).shape == (3, 64)
    with pytest.raises(ValueError, match="unknown stages"):
        net.forward_stages(torch.randn(1, 1, 8, 8), ("layer5",))


def test_resnet_bad_file_names_it(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pth"):
        ResNetBackbone("resnet18", weights_path=bad)


def test_resnet_stem_mismatch_warns_and_keeps_rest(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    with pytest.warns(UserWarning, match="conv1"):
        net = ResNetBackbone("resnet18", cifar_stem=True, weights_path=path)
    torch.testing.assert_close(net.layer1[0].conv1.weight, tv.layer1[0].conv1.weight)


def test_mlp_head_shapes():
    head = MLPHead(16, 32, 8, num_layers=3, last_bn=True)
    assert head(torch.randn(4, 16)).shape == (4, 8)
    assert MLPHead(16, 32, 8, num_layers=1)(torch.randn(4, 16)).shape == (4, 8)


def test_ema_update_formula_and_frozen_copy():
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    teacher = frozen_copy(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()(torch.randn(8, 3))  # changes running stats of the student only
    ema_update_(teacher, student, 0.9)
    for b, t, s in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    assert not torch.equal(teacher[1].running_mean, student[1].running_mean)
    ema_update_(teacher, student, 0.9, copy_buffers=True)
    torch.testing.assert_close(teacher[1].running_mean, student[1].running_mean)


def test_queue_wraparound_alignment_and_labels():
    q = FeatureQueue(5, {"a": 2, "b": 3}, with_labels=True)
    assert q.num_filled == 0 and (q.labels == -1).all()
    torch.testing.assert_close(q.features("a").norm(dim=1), torch.ones(5))
    for step in range(3):  # 3 batches of 2 -> rows 0,1 | 2,3 | 4,0
        ids = torch.tensor([2 * step, 2 * step + 1], dtype=torch.float)
        q.enqueue({"a": ids[:, None].repeat(1, 2), "b": ids[:, None].repeat(1, 3)}, ids.long())
    assert int(q.ptr) == 1 and q.num_filled == 5
    assert q.labels.tolist() == [5, 1, 2, 3, 4]
    torch.testing.assert_close(q.features("a")[:, 0], q.labels.float())
    torch.testing.assert_close(q.features("b")[:, 2], q.labels.float())
    big = torch.arange(7, dtype=torch.float)[:, None]
    q2 = FeatureQueue(3, 1)
    q2.enqueue(big)
    assert q2.features()[:, 0].tolist() == [6.0, 4.0, 5.0]  # last 3 rows written at 1,2,0 after wrapping


def test_queue_errors():
    q = FeatureQueue(4, 2, with_labels=True)
    with pytest.raises(ValueError, match="labels"):
        q.enqueue(torch.randn(2, 2))
    with pytest.raises(KeyError):
        q.features("nope")


def test_queue_state_survives_state_dict():
    q = FeatureQueue(4, 2, with_labels=True)
    q.enqueue(F.normalize(torch.randn(3, 2), dim=1), torch.tensor([1, 2, 3]))
    r = FeatureQueue(4, 2, with_labels=True)
    r.load_state_dict(q.state_dict())
    assert int(r.ptr) == 3 and r.num_filled == 3
    torch.testing.assert_close(r.features(), q.features())

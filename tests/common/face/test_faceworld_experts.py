"""Face-world experts: the real networks' interfaces, the FLAME-like geometry, the camera, loading and training."""

from __future__ import annotations

import pytest
import torch

from common.data import faceworld as fw
from common.face import faceworld_experts as fe
from common.face.checkpoint import CheckpointError
from common.face.flame import axis_angle_to_euler, orthographic_project, rotation_matrix_to_axis_angle, to_image_space
from common.face.losses import FIXED_CAM, flame_shape_terms
from common.weights import MissingWeightsError


def batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    return fe._batch(torch.arange(n), torch.Generator().manual_seed(seed))


def test_identity_interface_matches_arcface():
    net = fe.FaceWorldIdentity().freeze()
    b = batch()
    x = net.crop(b["image"])
    assert x.shape == (4, 3, 56, 56)
    fmap = net.features(x)
    assert fmap.shape == (4, 96, 7, 7)
    emb = net(x)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    torch.testing.assert_close(torch.nn.functional.normalize(net.output_layer(fmap), dim=1), emb)
    torch.testing.assert_close(net.embed_images(b["image"]), emb)
    # gradients reach the image (it is used as a loss)
    img = b["image"].clone().requires_grad_(True)
    net.embed_images(img).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="56"):
        net(b["image"])


def test_frozen_expert_stays_in_eval_mode():
    net = fe.FaceWorldIdentity().freeze()
    holder = torch.nn.Sequential(net)
    holder.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_attribute_interface_matches_deca():
    net = fe.FaceWorldAttributes().freeze()
    b = batch()
    crop = fe.attribute_crop(b["image"], b["landmarks"])
    assert crop.shape == (4, 3, 56, 56) and crop.min() >= 0 and crop.max() <= 1
    out = net(crop)
    assert out["shape"].shape == (4, fw.SHAPE_DIM) and out["exp"].shape == (4, 8)
    assert out["pose"].shape == (4, 6) and out["cam"].shape == (4, 3)
    # the pose is axis-angle in FLAME's convention: it decodes back to the predicted Euler angles
    torch.testing.assert_close(axis_angle_to_euler(out["pose"][:, :3]), out["angles"], atol=1e-3, rtol=0)
    fmap = net.features(crop)
    for k, v in net.params_from_features(fmap).items():
        torch.testing.assert_close(v, out[k])
    assert fe.attribute_crop(b["image"]).shape == (4, 3, 56, 56)  # the fixed face-world box


def test_flame_like_model_is_the_renderer_geometry():
    b = batch(3)
    flame = fe.FaceWorldFLAME()
    pose6 = torch.cat([rotation_matrix_to_axis_angle(fw.rotation(b["pose"])), torch.zeros(3, 3)], 1)
    verts, lm = flame(b["identity"][:, : fw.SHAPE_DIM], b["expression"], pose6)
    assert verts.shape == (3, 158, 3) and lm.shape == (3, 68, 3)
    # DECA's fixed camera (8, 0, 0) puts the landmarks exactly on the render's pixels
    cam = torch.tensor(FIXED_CAM).expand(3, 3)
    pix = to_image_space(orthographic_project(lm, cam), 64)[..., :2]
    torch.testing.assert_close(pix, b["landmarks"], atol=1e-3, rtol=0)
    # texture does not change the geometry; the shape and eye/mouth terms of StyleMask run on it unchanged
    gt = {"shape": b["identity"][:, : fw.SHAPE_DIM], "exp": b["expression"], "pose": pose6}
    same = flame_shape_terms(flame, gt, gt, image_size=224)
    assert all(v.item() == 0 for v in same.values())
    moved = dict(gt, exp=gt["exp"] + torch.tensor([0, 0.6, 0, 0, 0, 0, 0, 0]))
    terms = flame_shape_terms(flame, gt, moved, image_size=224)
    assert terms["mouth"] > 0.5 and terms["shape"] > 0


def test_camera_projects_onto_the_crop():
    """cam from the crop box: DECA's decode of the FLAME-unit landmarks lands on the cropped landmark pixels."""
    from common.face.align import deca_crop_matrix

    b = batch(4, seed=3)
    cam = fe._cam_from_crop(b["landmarks"], 64)
    pose6 = torch.cat([rotation_matrix_to_axis_angle(fw.rotation(b["pose"])), torch.zeros(4, 3)], 1)
    _, lm = fe.FaceWorldFLAME()(b["identity"][:, : fw.SHAPE_DIM], b["expression"], pose6)
    proj = to_image_space(orthographic_project(lm, cam), 56)[..., :2]
    m = deca_crop_matrix(landmarks=b["landmarks"], size=56)
    expected = torch.einsum("bij,bnj->bni", m[:, :, :2], b["landmarks"]) + m[:, None, :, 2]
    torch.testing.assert_close(proj, expected, atol=1e-3, rtol=0)


def test_save_load_round_trip_and_errors(tmp_path):
    net = fe.FaceWorldIdentity().freeze()
    path = tmp_path / "id.pt"
    fe._save(net, "identity", {"width": net.width, "dim": net.dim}, path)
    assert all(v.dtype == torch.float16 for v in torch.load(path)["state_dict"].values() if v.is_floating_point())
    loaded = fe.load_faceworld_identity(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(2, 3, 56, 56) * 2 - 1
    torch.testing.assert_close(loaded(x), fe._round_to_half_(net)(x))  # the file holds float16 weights
    with pytest.raises(CheckpointError, match="identity' expert, not the 'attributes"):
        fe.load_faceworld_attributes(path)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a face-world expert"):
        fe.load_faceworld_identity(tmp_path / "other.pt")
    with pytest.raises(MissingWeightsError, match="rebuild: python -m common.face.faceworld_experts"):
        fe.load_faceworld_attributes(tmp_path / "absent.pt")


def test_training_reduces_the_losses():
    """A few steps of each recipe on a tiny budget run and lower their loss (the full runs are in the README)."""
    torch.manual_seed(0)
    ident = fe.train_identity(steps=12, batch_size=32, n_identities=8, lr=3e-3, log_every=100)
    assert not ident.training
    g = torch.Generator().manual_seed(5)
    b = fe._batch(torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), g)
    emb = ident.embed_images(b["image"])
    sim = emb @ emb.T
    same = torch.tensor([sim[0, 1], sim[2, 3], sim[4, 5], sim[6, 7]]).mean()
    diff = torch.tensor([sim[0, 2], sim[2, 4], sim[4, 6], sim[6, 0]]).mean()
    assert same > diff
    attr = fe.train_attributes(steps=15, batch_size=32, lr=3e-3, log_every=100)
    metrics = fe.evaluate_attributes(attr, n=64)
    assert metrics["yaw_err_deg"] < 12  # an untrained head predicts ~0: mean |yaw| is about 12 degrees


def test_the_auxiliary_landmark_head_trains_the_trunk_and_is_not_saved():
    """With ``landmark_weight`` the landmark term reaches the shared layers (same seed, different weights), and the
    trained network has the same keys and shapes as one trained without it."""
    plain = fe.train_attributes(steps=2, batch_size=8, log_every=100)
    aux = fe.train_attributes(steps=2, batch_size=8, log_every=100, landmark_weight=1.0)
    a, b = plain.state_dict(), aux.state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert not torch.equal(a["encoder.0.weight"], b["encoder.0.weight"])
    again = fe.train_attributes(steps=2, batch_size=8, log_every=100)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in a.items())  # the difference is the head's


def test_landmark_weight_is_refused_for_the_identity_expert(tmp_path):
    with pytest.raises(SystemExit):
        fe.main(["train", "identity", "--out", str(tmp_path / "x.pt"), "--landmark-weight", "1"])
    assert not (tmp_path / "x.pt").exists()


def test_landmark_features_by_hand():
    lm = torch.zeros(1, 68, 2)
    lm[0, :34, 0], lm[0, 34:, 0] = 10.0, 14.0  # half the points at x=10, half at x=14: centre 12, distance 2
    f = fe.landmark_features(lm).view(68, 2)
    assert torch.allclose(f[:34, 0], torch.tensor(-1.0)) and torch.allclose(f[34:, 0], torch.tensor(1.0))
    assert torch.all(f[:, 1] == 0)


def test_perceptual_distance():
    perc = fe.FaceWorldPerceptual(fe.FaceWorldIdentity(), fe.FaceWorldAttributes())
    b = batch(4)
    x = b["image"]
    d_self = perc(x, x)
    torch.testing.assert_close(d_self, torch.zeros(4))
    y = x.clone().requires_grad_(True)
    d = perc(x.roll(1, 0), y)
    assert d.shape == (4,) and (d > 0).all()
    d.sum().backward()
    assert y.grad.abs().sum() > 0
    # symmetric, and a small change is closer than a different face
    torch.testing.assert_close(perc(x, x.roll(1, 0)), perc(x.roll(1, 0), x))
    assert (perc(x, x + 0.02 * torch.randn_like(x)) < perc(x, x.roll(1, 0))).all()


def test_estimate_landmarks_with_an_oracle_expert_is_exact():
    """With an oracle attribute network (the true parameters; a wrong crop camera, which must not matter: the face
    world's camera is fixed) the estimate equals the renderer's landmarks, from the fixed box and after refining."""
    b = batch(3, seed=7)

    class Oracle(torch.nn.Module):
        def forward(self, crop):
            pose6 = torch.cat([rotation_matrix_to_axis_angle(fw.rotation(b["pose"])), torch.zeros(3, 3)], 1)
            cam = torch.tensor([[5.0, 0.3, -0.2]]).expand(3, 3)
            return {"shape": b["identity"][:, : fw.SHAPE_DIM], "exp": b["expression"], "pose": pose6, "cam": cam}

    for refine in (0, 1):
        lm = fe.estimate_landmarks(Oracle(), b["image"], refine=refine)
        torch.testing.assert_close(lm, b["landmarks"], atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match="square"):
        fe.estimate_landmarks(Oracle(), b["image"][..., :60])


def test_evaluate_command_runs_only_the_experts_named(monkeypatch, capsys, tmp_path):
    """`evaluate identity` must not need the attribute expert's file; unknown names are refused."""
    monkeypatch.setattr(fe, "load_faceworld_identity", lambda path=None: "ident")
    monkeypatch.setattr(fe, "evaluate_identity", lambda net: {"roc_auc": 0.5})
    monkeypatch.setattr(fe, "load_faceworld_attributes", lambda path=None: pytest.fail("attributes loaded"))
    (tmp_path / "x.pt").write_bytes(b"x")
    fe.main(["evaluate", "identity", "--identity", str(tmp_path / "x.pt")])
    assert "roc_auc: 0.5000" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        fe.main(["evaluate", "bogus"])
    assert "unknown experts ['bogus']" in capsys.readouterr().err


def test_attribute_training_camera_target_is_that_of_the_crop_seen():
    """Each training input comes with the box it was cropped from (jittered landmark box or the fixed face-world
    box), so the camera target matches the crop: re-cropping with the returned boxes gives the same inputs."""
    b = batch(16, seed=3)
    inputs, boxes = fe._attribute_inputs(b, torch.Generator().manual_seed(0))
    assert inputs.shape == (16, 3, fe.INPUT_SIZE, fe.INPUT_SIZE) and boxes.shape == (16, 2, 2)
    torch.testing.assert_close(fe.attribute_crop(b["image"], boxes), inputs, atol=1e-5, rtol=0)
    fixed = fe.attribute_crop(b["image"])
    used_fixed = [bool(torch.allclose(inputs[i], fixed[i])) for i in range(16)]
    assert any(used_fixed) and not all(used_fixed)  # both kinds of crop occur
    net = fe.FaceWorldAttributes()
    pred = net.raw(net.features(inputs))
    pred["cam"] = fe._cam_from_crop(boxes, 64) / fe._CAM_SCALE  # the camera of the crops seen: no cam loss
    assert fe._attribute_loss(pred, b, boxes)["cam"] == 0
    pred["cam"] = fe._cam_from_crop(b["landmarks"], 64) / fe._CAM_SCALE  # the un-jittered box's camera: a loss
    assert fe._attribute_loss(pred, b, boxes)["cam"] > 0


def test_degrade_blurs_as_a_gaussian_and_adds_bounded_noise():
    """``degrade`` with p=1 and no noise is each sample's Gaussian blur (torchvision's, computed independently with
    the same drawn standard deviations); with p=0 it changes nothing; each sample's noise has the drawn standard
    deviation."""
    from torchvision.transforms.functional import gaussian_blur

    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(fe.degrade(x, torch.Generator().manual_seed(1), 0.0), x)
    out = fe.degrade(x, torch.Generator().manual_seed(1), 1.0, max_blur=1.2, max_noise=0.0)
    g = torch.Generator().manual_seed(1)
    torch.rand(3, generator=g)  # the blur coin flips
    sigma = 0.3 + 0.9 * torch.rand(3, generator=g)
    ref = torch.stack([gaussian_blur(x[i : i + 1], 9, float(sigma[i]))[0] for i in range(3)])
    assert torch.allclose(out[..., 4:-4, 4:-4], ref[..., 4:-4, 4:-4], atol=1e-5)
    flat = torch.zeros(4, 3, 32, 32)  # blur leaves a constant image as it is: what remains is the noise
    noisy = fe.degrade(flat, torch.Generator().manual_seed(2), 1.0, max_noise=0.05)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):  # blur coins, blur sigmas, noise coins
        torch.rand(4, generator=g)
    want = 0.05 * torch.rand(4, generator=g)  # each sample's noise standard deviation, U(0, max_noise)
    assert torch.allclose(noisy.flatten(1).std(1), want, rtol=0.05)


def test_fine_tuning_with_degradations_starts_from_the_given_expert(tmp_path):
    """``init`` copies the given network's weights before training (a step at a vanishing learning rate leaves
    them), and the CLI's ``--degrade`` / ``--init`` are refused for the identity expert."""
    start = fe.train_attributes(steps=2, batch_size=8, log_every=100)
    same = fe.train_attributes(steps=1, batch_size=8, lr=1e-12, log_every=100, init=start)
    for k, v in start.named_parameters():
        assert torch.allclose(v, dict(same.named_parameters())[k], atol=1e-8), k
    tuned = fe.train_attributes(steps=2, batch_size=8, log_every=100, init=start, degrade_p=0.5)
    assert not torch.equal(tuned.state_dict()["encoder.0.weight"], start.state_dict()["encoder.0.weight"])
    for flag in (["--degrade", "0.5"], ["--init", str(tmp_path / "a.pt")]):
        with pytest.raises(SystemExit):
            fe.main(["train", "identity", "--out", str(tmp_path / "x.pt"), *flag])
    assert not (tmp_path / "x.pt").exists()


def test_attribute_head_depth_keeps_the_one_layer_layout():
    """``depth=1`` is the layout of the files shipped before ``depth`` existed; deeper heads add Linear+ReLU pairs."""
    one = fe.FaceWorldAttributes(width=8, hidden=16)
    assert [k for k in one.state_dict() if k.startswith("layers")] == [
        "layers.1.weight", "layers.1.bias", "layers.3.weight", "layers.3.bias"
    ]  # fmt: skip
    two = fe.FaceWorldAttributes(width=8, hidden=16, depth=2)
    shapes = {k: tuple(v.shape) for k, v in two.state_dict().items() if k.startswith("layers")}
    n_out = sum(fe._HEADS.values())
    assert shapes == {
        "layers.1.weight": (16, 4 * 8 * 49), "layers.1.bias": (16,),
        "layers.3.weight": (16, 16), "layers.3.bias": (16,),
        "layers.5.weight": (n_out, 16), "layers.5.bias": (n_out,),
    }  # fmt: skip
    assert two(torch.rand(3, 3, 56, 56))["exp"].shape == (3, 8)
    with pytest.raises(ValueError, match="depth"):
        fe.FaceWorldAttributes(depth=0)


def test_head_only_training_keeps_the_trunk_and_fits_the_head(tmp_path, capsys):
    """The new head is trained (its loss on the training distribution falls below that of the same head untrained)
    while the trunk's feature map stays bit-identical; the CLI saves ``depth`` so the file loads back."""
    torch.manual_seed(0)
    init = fe.FaceWorldAttributes(width=8, hidden=16).freeze()
    kw = {"depth": 2, "hidden": 32, "renders": 384, "batch_size": 64, "seed": 3, "degrade_p": 0.0}
    net = fe.train_attribute_head(init, epochs=30, lr=3e-3, log_every=100, **kw)
    assert net.depth == 2 and not net.training
    x = torch.rand(4, 3, 56, 56)
    assert torch.equal(net.features(x), init.features(x))
    torch.manual_seed(3)  # train_attribute_head seeds then builds the head: this is its starting point
    untrained = fe.FaceWorldAttributes(init.width, 32, 2).freeze()
    g = torch.Generator().manual_seed(3)
    batch = fe._batch(
        fe.fw.SPLITS["train"].start + torch.randint(0, len(fe.fw.SPLITS["train"]), (384,), generator=g), g
    )
    inputs, boxes = fe._attribute_inputs(batch, g)  # the cached crops, drawn again
    fmap = init.features(inputs)

    def loss(m):
        return fe._attribute_total(fe._attribute_loss(m.raw(fmap), batch, boxes)).item()

    assert loss(net) < 0.75 * loss(untrained)  # 0.65 measured; an untrained head gives 1.0
    with pytest.raises(ValueError, match="renders"):
        fe.train_attribute_head(init, renders=10, batch_size=64)

    src = tmp_path / "init.pt"
    fe._save(init, "attributes", {"width": 8, "hidden": 16}, src)  # a file from before `depth` existed
    out = tmp_path / "head.pt"
    for bad in (["--depth", "2"], ["--head-only"], ["--head-only", "--init", str(src), "--steps", "5"]):
        with pytest.raises(SystemExit):
            fe.main(["train", "attributes", "--out", str(out), *bad])
    with pytest.raises(SystemExit):
        fe.main(["train", "identity", "--out", str(out), "--head-only"])
    assert "--head-only applies to the attribute expert only" in capsys.readouterr().err
    assert not out.exists()
    old = fe.load_faceworld_attributes(src)
    assert old.depth == 1
    head = ["--head-only", "--depth", "2", "--hidden", "8", "--renders", "256", "--epochs", "1"]
    fe.main(["train", "attributes", "--out", str(out), "--init", str(src), *head])
    new = fe.load_faceworld_attributes(out)
    assert (new.depth, new.hidden) == (2, 8) and torch.load(out)["config"]["depth"] == 2
    assert torch.equal(new.features(x), old.features(x))

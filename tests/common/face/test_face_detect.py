"""Tests of common/face/detect.py (MTCNN from facenet-pytorch, weights in the wheel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.face.detect import FaceDetector, NoFaceError, to_rgb_uint8


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_no_face_is_reported(detector):
    img = np.full((160, 200, 3), 128, dtype=np.uint8)
    det = detector.detect(img)
    assert not det.found and det.box is None and det.landmarks5 is None and det.score == 0.0
    with pytest.raises(NoFaceError, match="blank_frame"):
        detector.detect(img, require=True, source="blank_frame")
    dets = detector.detect_batch([img, img])
    assert [d.found for d in dets] == [False, False]
    mixed = detector.detect_batch([img, np.zeros((90, 120, 3), np.uint8)], sources=["a.png", "b.png"])
    assert [d.found for d in mixed] == [False, False]  # different sizes: one MTCNN call per image
    with pytest.raises(NoFaceError, match="b.png"):
        detector.detect_batch([img[:90, :120], np.zeros((90, 120, 3), np.uint8)], require=True, sources=["b.png", "c"])
    with pytest.raises(NoFaceError, match="image 0"):
        detector.detect_batch([img], require=True)


def test_input_conversion_errors():
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        to_rgb_uint8(torch.full((3, 8, 8), 2.0))
    with pytest.raises(ValueError, match="uint8"):
        to_rgb_uint8(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        to_rgb_uint8("missing.png")
    t = torch.rand(3, 5, 7)
    assert to_rgb_uint8(t).shape == (5, 7, 3)


def test_real_frame_has_one_face(detector, shared_data):
    path = shared_data / "StelaBou_HyperReenact" / "inference_examples" / "source.png"
    det = detector.detect(path, require=True)
    assert det.found and det.score > 0.95 and len(det.all_boxes) == 1
    x1, y1, x2, y2 = det.box
    assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 720
    lm = det.landmarks5
    # Landmarks inside the box; eyes above the mouth, left eye left of the right eye.
    assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2))
    assert lm[0, 0] < lm[1, 0] and lm[:2, 1].max() < lm[3:, 1].min()
    # The same frame as a float tensor and in a batch gives the same face.
    img = to_rgb_uint8(path)
    det_t = detector.detect(torch.from_numpy(img).permute(2, 0, 1).float() / 255)
    assert np.allclose(det_t.box, det.box, atol=2.0)


def test_real_frame_alignment_crops(detector, shared_data):
    from common.face.align import (
        ARCFACE_TEMPLATE_112,
        arcface_align,
        ffhq_align,
        landmark_box_crop,
        similarity_transform,
    )

    img = to_rgb_uint8(shared_data / "StelaBou_HyperReenact" / "inference_examples" / "source.png")
    det = detector.detect(img, require=True)
    lm5 = torch.from_numpy(det.landmarks5).float()[None]
    crop = arcface_align(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, lm5)
    assert crop.shape == (1, 3, 112, 112) and crop.std() > 0.05  # a real face, not padding
    m = similarity_transform(lm5, ARCFACE_TEMPLATE_112[None])
    mapped = lm5[0] @ m[0, :, :2].T + m[0, :, 2]
    assert (mapped - ARCFACE_TEMPLATE_112).abs().max() < 6.0  # a real face fits the template to a few pixels
    assert ffhq_align(img, det.landmarks5, size=256).shape == (256, 256, 3)
    assert landmark_box_crop(img, det.box.reshape(2, 2), size=256).shape == (256, 256, 3)

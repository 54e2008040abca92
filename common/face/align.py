"""Face alignment and the crops the official StyleMask / HyperReenact / DECA / ArcFace code uses.

Coordinates are pixels with the centre of pixel ``i`` at ``i`` (the convention of landmark detectors).
Tensor crops are differentiable warps (``grid_sample``), both with respect to the image and to the
transform, so losses can flow through them; the numpy/PIL crops reproduce the official preprocessing
of real images (FFHQ alignment, HyperReenact's landmark-box crop).

Landmark conventions: 68 points in the iBUG/FAN order; 5 points in MTCNN order (left eye, right eye,
nose, left mouth corner, right mouth corner, "left" = image left).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "HYPERREENACT_TEMPLATE_112",
    "LandmarkDetector68",
    "arcface_align",
    "deca_crop",
    "deca_crop_matrix",
    "ffhq_align",
    "ffhq_align_tensor",
    "ffhq_quad",
    "has_face_alignment",
    "landmark_box",
    "landmark_box_crop",
    "landmark_box_crop_tensor",
    "lm68_to_lm5",
    "similarity_transform",
    "warp_affine",
]

# ArcFace / InsightFace reference points for a 112x112 crop (TreB1eN's 96x112 template shifted by +8 px in x).
ARCFACE_TEMPLATE_112 = torch.tensor(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# The wider template HyperReenact's ``find_affine_transformation`` uses (libs/criteria/csim.py).
HYPERREENACT_TEMPLATE_112 = torch.tensor(
    [[35.343697, 51.6963], [76.453766, 51.5014], [56.029396, 71.7366], [39.14085, 92.3655], [73.18488, 92.2041]]
)


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def warp_affine(
    images: Tensor,
    matrix: Tensor,
    size: int | tuple[int, int],
    padding_mode: str = "zeros",
    mode: str = "bilinear",
    inverse: bool = False,
) -> Tensor:
    """Warp ``images [B,C,H,W]`` by ``matrix [B,2,3]`` (input pixel -> output pixel) to ``[B,C,h,w]``.

    Output pixel ``(u, v)`` samples the input at ``M^-1 (u, v)``, the semantics of ``cv2.warpAffine`` /
    ``skimage.transform.warp``; ``inverse=True`` takes the output -> input matrix directly.
    Differentiable in ``images`` and ``matrix``.
    """
    if images.ndim != 4:
        raise ValueError(f"warp_affine expects images [B,C,H,W], got shape {tuple(images.shape)}")
    if matrix.ndim == 2:
        matrix = matrix.unsqueeze(0).expand(images.shape[0], -1, -1)
    if matrix.shape[-2:] != (2, 3) or matrix.shape[0] != images.shape[0]:
        raise ValueError(f"matrix must be [B,2,3] with B={images.shape[0]}, got {tuple(matrix.shape)}")
    h, w = _size2(size)
    H, W = images.shape[-2:]
    m = matrix.to(images.dtype)
    if inverse:
        inv = m
    else:
        bottom = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype, device=m.device).expand(m.shape[0], 1, 3)
        inv = torch.linalg.inv(torch.cat([m, bottom], 1))[:, :2]  # output pixel -> input pixel
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=m.dtype, device=m.device), torch.arange(w, dtype=m.dtype, device=m.device), indexing="ij"
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)  # [h*w, 3]
    src = pts @ inv.transpose(1, 2)  # [B, h*w, 2]
    # Pixel centres -> grid_sample's normalised coordinates with align_corners=False.
    gx = (2 * src[..., 0] + 1) / W - 1
    gy = (2 * src[..., 1] + 1) / H - 1
    grid = torch.stack([gx, gy], -1).reshape(-1, h, w, 2)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def similarity_transform(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src [B,N,2]`` to ``dst [B,N,2]``.

    Umeyama's closed form (the same estimate as ``skimage.transform.SimilarityTransform``), differentiable.
    Returns ``[B,2,3]``.
    """
    if src.shape != dst.shape or src.shape[-1] != 2:
        raise ValueError(f"src and dst must both be [B,N,2], got {tuple(src.shape)} and {tuple(dst.shape)}")
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s, d = src - mu_s, dst - mu_d
    # For 2-D similarities the solution has the form [[a, -b], [b, a]]:
    # a = sum(s.d) / sum|s|^2, b = sum(s x d) / sum|s|^2.
    norm = (s**2).sum((1, 2))
    a = (s * d).sum((1, 2)) / norm
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1) / norm
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)  # [B,2,2]
    t = mu_d.squeeze(1) - (rot @ mu_s.transpose(1, 2)).squeeze(-1)
    return torch.cat([rot, t.unsqueeze(-1)], -1)


def lm68_to_lm5(lm68: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """68 landmarks ``[...,68,2]`` -> 5 points ``[...,5,2]``: eye centres (36-41, 42-47), nose tip 30, mouth 48, 54."""
    if lm68.shape[-2:] != (68, 2):
        raise ValueError(f"expected 68 landmarks [...,68,2], got shape {tuple(lm68.shape)}")
    if isinstance(lm68, np.ndarray):
        return np.stack(
            [
                lm68[..., 36:42, :].mean(-2),
                lm68[..., 42:48, :].mean(-2),
                lm68[..., 30, :],
                lm68[..., 48, :],
                lm68[..., 54, :],
            ],
            -2,
        )
    return torch.stack(
        [
            lm68[..., 36:42, :].mean(-2),
            lm68[..., 42:48, :].mean(-2),
            lm68[..., 30, :],
            lm68[..., 48, :],
            lm68[..., 54, :],
        ],
        -2,
    )


def _as_lm5(landmarks: Tensor) -> Tensor:
    if landmarks.shape[-2:] == (68, 2):
        return lm68_to_lm5(landmarks)
    if landmarks.shape[-2:] != (5, 2):
        raise ValueError(f"expected landmarks [B,5,2] or [B,68,2], got shape {tuple(landmarks.shape)}")
    return landmarks


def arcface_align(
    images: Tensor,
    landmarks: Tensor,
    size: int = 112,
    template: str | Tensor = "arcface",
    convention: str | None = None,
) -> Tensor:
    """ArcFace five-point similarity alignment: ``images [B,3,H,W]``, ``landmarks [B,5,2]`` (or 68) -> ``[B,3,S,S]``.

    ``template``: "arcface" (InsightFace reference points), "hyperreenact" (the wider template of HyperReenact's
    csim.py) or a ``[5,2]`` tensor in 112-pixel units. ``convention`` (default: "hyperreenact" with that
    template, else "arcface"): "arcface" fits landmarks -> template with pixel-centre coordinates (TreB1eN's
    cv2 warp); "hyperreenact" fits template -> landmarks and treats coordinates as pixel corners, as
    csim.py's ``find_affine_transformation`` + ``affine_grid`` (half a pixel apart). Differentiable in
    images and landmarks.
    """
    lm5 = _as_lm5(landmarks).to(images.dtype)
    if convention is None:
        convention = "hyperreenact" if isinstance(template, str) and template == "hyperreenact" else "arcface"
    if convention not in ("arcface", "hyperreenact"):
        raise ValueError(f"convention must be 'arcface' or 'hyperreenact', got {convention!r}")
    if isinstance(template, str):
        table = {"arcface": ARCFACE_TEMPLATE_112, "hyperreenact": HYPERREENACT_TEMPLATE_112}
        if template not in table:
            raise ValueError(f"template must be one of {sorted(table)} or a [5,2] tensor, got {template!r}")
        template = table[template]
    tpl = (template.to(images) * (size / 112.0)).unsqueeze(0).expand_as(lm5)
    if convention == "arcface":
        return warp_affine(images, similarity_transform(lm5, tpl), size)
    # Corner coordinates c are pixel-centre coordinates c - 0.5 on both sides.
    return warp_affine(images, similarity_transform(tpl - 0.5, lm5 - 0.5), size, inverse=True)


# --------------------------------------------------------------------------------------------------
# FFHQ alignment (NVlabs ffhq-dataset recipe, as StyleMask's libs/utilities/ffhq_cropping.py uses it)
# --------------------------------------------------------------------------------------------------


def _eyes_mouth(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lm = np.asarray(lm, dtype=np.float64)
    if lm.shape == (68, 2):
        return lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]
    if lm.shape == (5, 2):
        return lm[0], lm[1], lm[3], lm[4]
    raise ValueError(f"landmarks must be [68,2] or [5,2], got shape {lm.shape}")


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ oriented crop square: ``(quad [4,2] (top-left, bottom-left, bottom-right, top-right), side)``."""
    eye_left, eye_right, mouth_left, mouth_right = _eyes_mouth(landmarks)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def _blur_pad(img: np.ndarray, pad: tuple[int, int, int, int], blur: float) -> np.ndarray:
    """Reflect-pad ``img`` by (left, top, right, bottom) and fade the padding to a blurred median (FFHQ recipe)."""
    from scipy.ndimage import gaussian_filter

    img = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = img.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    p = np.maximum(np.array(pad, dtype=np.float32), 1e-10)
    mask = np.maximum(
        1.0 - np.minimum(np.float32(x) / p[0], np.float32(w - 1 - x) / p[2]),
        1.0 - np.minimum(np.float32(y) / p[1], np.float32(h - 1 - y) / p[3]),
    )
    img += (gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img


def ffhq_align(
    image: np.ndarray, landmarks: np.ndarray, size: int = 256, transform_size: int | None = None
) -> np.ndarray:
    """FFHQ-style aligned crop of ``image uint8 [H,W,3]`` from 68 (or 5) landmarks -> ``uint8 [size,size,3]``.

    Shrink, crop, reflect-pad with blurred borders, then a quad transform, as the NVlabs recipe. StyleMask
    transforms straight to the output size (``transform_size=None``); the original FFHQ script used 4096.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"ffhq_align expects uint8 [H,W,3], got {image.dtype} {image.shape}")
    quad, qsize = ffhq_quad(landmarks)
    transform_size = transform_size or size
    img = Image.fromarray(image)
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink)))
        img = img.resize(rsize, Image.LANCZOS)
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (
        int(np.floor(min(quad[:, 0]))),
        int(np.floor(min(quad[:, 1]))),
        int(np.ceil(max(quad[:, 0]))),
        int(np.ceil(max(quad[:, 1]))),
    )
    crop = (
        max(crop[0] - border, 0),
        max(crop[1] - border, 0),
        min(crop[2] + border, img.size[0]),
        min(crop[3] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
    pad = (
        int(np.floor(min(quad[:, 0]))),
        int(np.floor(min(quad[:, 1]))),
        int(np.ceil(max(quad[:, 0]))),
        int(np.ceil(max(quad[:, 1]))),
    )
    pad = (
        max(-pad[0] + border, 0),
        max(-pad[1] + border, 0),
        max(pad[2] - img.size[0] + border, 0),
        max(pad[3] - img.size[1] + border, 0),
    )
    if max(pad) > border - 4:
        pad = tuple(int(p) for p in np.maximum(pad, int(np.rint(qsize * 0.3))))
        arr = _blur_pad(np.asarray(img), pad, qsize * 0.01)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]
    img = img.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(), Image.BILINEAR)
    if size < transform_size:
        img = img.resize((size, size), Image.LANCZOS)
    return np.array(img)


def ffhq_align_tensor(images: Tensor, landmarks: Tensor, size: int = 256, padding_mode: str = "reflection") -> Tensor:
    """Differentiable FFHQ alignment: the same oriented square as ``ffhq_align``, one bilinear warp.

    ``images [B,C,H,W]``, ``landmarks [B,68,2]`` or ``[B,5,2]`` -> ``[B,C,size,size]``. No shrink/blur steps.
    """
    if landmarks.shape[-2:] == (68, 2):
        el, er, ml, mr = landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1), landmarks[:, 48], landmarks[:, 54]
    elif landmarks.shape[-2:] == (5, 2):
        el, er, ml, mr = landmarks[:, 0], landmarks[:, 1], landmarks[:, 3], landmarks[:, 4]
    else:
        raise ValueError(f"landmarks must be [B,68,2] or [B,5,2], got {tuple(landmarks.shape)}")
    eye_avg = (el + er) / 2
    e2e = er - el
    e2m = (ml + mr) / 2 - eye_avg
    x = e2e - torch.stack([-e2m[:, 1], e2m[:, 0]], -1)
    x = x / x.norm(dim=-1, keepdim=True)
    x = x * torch.maximum(e2e.norm(dim=-1) * 2.0, e2m.norm(dim=-1) * 1.8).unsqueeze(-1)
    y = torch.stack([-x[:, 1], x[:, 0]], -1)
    c = eye_avg + e2m * 0.1
    q0 = c - x - y  # maps to the output's top-left corner
    # Output pixel centre (u,v) <- q0 + (u+0.5)/S * 2x + (v+0.5)/S * 2y  (input pixel-centre coordinates).
    inv = torch.stack([2 * x / size, 2 * y / size, q0 + (x + y) / size], -1)  # [B,2,3] output -> input
    full = torch.cat(
        [inv, torch.tensor([0.0, 0.0, 1.0], dtype=inv.dtype, device=inv.device).expand(inv.shape[0], 1, 3)], 1
    )
    fwd = torch.linalg.inv(full)[:, :2]
    return warp_affine(images, fwd, size, padding_mode=padding_mode)


# --------------------------------------------------------------------------------------------------
# DECA's 224 crop (decalib/datasets/datasets.py), differentiable, without kornia
# --------------------------------------------------------------------------------------------------


def deca_crop_matrix(
    landmarks: Tensor | None = None, boxes: Tensor | None = None, size: int = 224, scale: float = 1.25
) -> Tensor:
    """``[B,2,3]`` input->crop matrix of DECA's square crop, from 68 landmarks ``[B,68,2]`` or boxes ``[B,4]``.

    Landmarks: box of the points, side ``((r-l)+(b-t))/2 * 1.1``; detector boxes: side ``((r-l)+(b-t))/2``
    and centre moved down by 0.12 side. Then ``int(side * scale)`` pixels map onto ``[0, size-1]``.
    """
    if (landmarks is None) == (boxes is None):
        raise ValueError("deca_crop needs exactly one of landmarks [B,68,2] or boxes [B,4]")
    if landmarks is not None:
        if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
            raise ValueError(f"landmarks must be [B,N,2], got {tuple(landmarks.shape)}")
        lo, hi = landmarks.min(1).values, landmarks.max(1).values
        left, top, right, bottom = lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]
        old = (right - left + bottom - top) / 2 * 1.1
        cx, cy = (left + right) / 2, (top + bottom) / 2
    else:
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must be [B,4] (x1,y1,x2,y2), got {tuple(boxes.shape)}")
        left, top, right, bottom = boxes.unbind(-1)
        old = (right - left + bottom - top) / 2
        cx, cy = (left + right) / 2, (top + bottom) / 2 + old * 0.12
    side = torch.floor(old * scale)  # the official int(); the crop position stays differentiable
    s = (size - 1) / side
    zero = torch.zeros_like(s)
    return torch.stack(
        [torch.stack([s, zero, -s * (cx - side / 2)], -1), torch.stack([zero, s, -s * (cy - side / 2)], -1)], 1
    )


def deca_crop(
    images: Tensor,
    landmarks: Tensor | None = None,
    boxes: Tensor | None = None,
    size: int = 224,
    scale: float = 1.25,
    kornia_compat: bool = False,
) -> Tensor:
    """DECA's crop of ``images [B,3,H,W]`` to ``[B,3,size,size]`` (differentiable; values keep their range).

    The official code warps [0,255] images with kornia then divides by 255; feed [0,1] images to get DECA's input.
    Sampling follows skimage/cv2 (pixel centres). kornia 0.4.x (the official pin) normalised pixel coordinates
    with (W-1) yet sampled with ``align_corners=False``, which shifts and scales its crop by a fraction of a
    pixel; ``kornia_compat=True`` reproduces that sampling exactly.
    """
    m = deca_crop_matrix(landmarks=landmarks, boxes=boxes, size=size, scale=scale).to(images)
    if not kornia_compat:
        return warp_affine(images, m, size)
    H, W = images.shape[-2:]
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype, device=m.device).expand(m.shape[0], 1, 3)
    m_inv = torch.linalg.inv(torch.cat([m, bottom], 1))
    # output pixel u -> kornia's destination pixel (u + 0.5)(size-1)/size -> M^-1 -> its source pixel p,
    # which grid_sample(align_corners=False) reads at p * W/(W-1) - 0.5.
    k = (size - 1) / size

    def diag(sx: float, sy: float, tx: float, ty: float) -> Tensor:
        return torch.tensor([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]], dtype=m.dtype, device=m.device)

    total = diag(W / (W - 1), H / (H - 1), -0.5, -0.5) @ m_inv @ diag(k, k, 0.5 * k, 0.5 * k)
    return warp_affine(images, total[:, :2], size, inverse=True)


# --------------------------------------------------------------------------------------------------
# HyperReenact's landmark-box crop (libs/utilities/ffhq_cropping.py: crop_using_landmarks)
# --------------------------------------------------------------------------------------------------


def landmark_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """HyperReenact's crop square ``(x1, y1, x2, y2)`` (integers, exclusive end) for landmarks ``[N,2]``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2:
        raise ValueError(f"landmarks must be [N,2], got {lm.shape}")
    center = ((lm.min(0) + lm.max(0)) / 2).round().astype(int)
    size = int(max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1])))
    center[1] -= size // 6
    return center[0] - size, center[1] - size, center[0] + size, center[1] + size


_landmark_box = landmark_box  # earlier private name, used by projects/hyperreenact


def landmark_box_crop(image: np.ndarray, landmarks: np.ndarray, size: int = 256) -> np.ndarray:
    """HyperReenact's crop: a ``2*s`` square around the landmark box (s = its longer side), raised by s//6,
    reflect-padded with a blurred border where it leaves the image, bicubic-resized to ``size``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"landmark_box_crop expects uint8 [H,W,3], got {image.dtype} {image.shape}")
    x1, y1, x2, y2 = landmark_box(landmarks)
    h, w = image.shape[:2]
    img = image
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
        pad = (max(-x1, 0), max(-y1, 0), max(x2 - w, 0), max(y2 - h, 0))
        # cv2.BORDER_REFLECT repeats the edge pixel: numpy's "symmetric".
        padded = np.pad(np.float32(image), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "symmetric")
        from scipy.ndimage import gaussian_filter

        ph, pw = padded.shape[:2]
        yy, xx, _ = np.ogrid[:ph, :pw, :1]
        p = np.array(pad, dtype=np.float32)
        p[p == 0] = 1e-10
        mask = np.maximum(
            1.0 - np.minimum(np.float32(xx) / p[0], np.float32(pw - 1 - xx) / p[2]),
            1.0 - np.minimum(np.float32(yy) / p[1], np.float32(ph - 1 - yy) / p[3]),
        )
        padded += (gaussian_filter(padded, [5.0, 5.0, 0]) - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(mask, 0.0, 1.0)
        img = padded
        x1, x2, y1, y2 = x1 + pad[0], x2 + pad[0], y1 + pad[1], y2 + pad[1]
    crop = np.asarray(img)[y1:y2, x1:x2]
    out = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.array(out)


def landmark_box_crop_tensor(images: Tensor, landmarks: Tensor, size: int = 256) -> Tensor:
    """Differentiable version of ``landmark_box_crop`` (same square, bilinear, reflection padding, no blur)."""
    lo, hi = landmarks.min(1).values, landmarks.max(1).values
    centre = ((lo + hi) / 2).round()
    side = torch.floor((hi - lo).max(-1).values)
    centre = torch.stack([centre[:, 0], centre[:, 1] - torch.floor(side / 6)], -1)
    x1, y1 = centre[:, 0] - side, centre[:, 1] - side
    # The 2*side input pixels starting at x1 map onto `size` output pixels (resize of a pixel grid).
    s = size / (2 * side)
    zero = torch.zeros_like(s)
    m = torch.stack(
        [torch.stack([s, zero, -s * x1 + (s - 1) / 2], -1), torch.stack([zero, s, -s * y1 + (s - 1) / 2], -1)], 1
    )
    return warp_affine(images, m.to(images), size, padding_mode="reflection")


# --------------------------------------------------------------------------------------------------
# Optional 68-point landmark backend (the `face_alignment` package, FAN), used only when installed
# --------------------------------------------------------------------------------------------------


def has_face_alignment() -> bool:
    """Whether the optional ``face_alignment`` package (68-point FAN) is importable."""
    try:
        import face_alignment  # noqa: F401
    except ImportError:
        return False
    return True


class LandmarkDetector68:
    """68-point landmarks through ``face_alignment`` (FAN). Raises ``ImportError`` with instructions when absent.

    The package downloads its detector weights on first use into its own cache: place them there beforehand
    on an offline machine. ``__call__(image uint8 [H,W,3]) -> [68,2] float`` or None when no face is found.
    """

    def __init__(self, device: str = "cpu") -> None:
        if not has_face_alignment():
            raise ImportError(
                "the optional 68-point landmark backend needs the `face_alignment` package "
                "(pip install face-alignment); MTCNN five points (common.face.detect) work without it"
            )
        import face_alignment

        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        self.fa = face_alignment.FaceAlignment(kind, device=device, flip_input=False)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        preds = self.fa.get_landmarks(np.asarray(image))
        if not preds:
            return None
        return np.asarray(preds[0], dtype=np.float64)

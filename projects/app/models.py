"""Which model each tab of the web app runs, and where it comes from. No model logic: only loaders of the projects.

Order per tab: the user's own file (``--ckpt TAB=PATH``), the released files of the weights registry, then the
face-world models shipped under ``pretrained/faceworld/`` (used when their registry entries exist and the files are
present). When none is available the tab shows the ``MissingWeightsError`` of the released files: the same
message the command line prints (file, folder, source, licence, sha256).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TABS = ("stylemask", "hyperreenact", "dferclip", "generator", "maskcon")

# registry names of the face-world models (fallback when the released files are absent)
FACEWORLD = {
    "stylemask": "faceworld_stylemask",
    "hyperreenact": "faceworld_hyperreenact",
    "generator": "faceworld_generator",
}


@dataclass
class Loaded:
    """A tab's model and a line saying where it came from."""

    model: Any
    origin: str


def _faceworld_path(tab: str):
    """The face-world file of ``tab`` when registered and present, else None."""
    from common.weights import REGISTRY, default_path

    name = FACEWORLD.get(tab)
    if name is None or name not in REGISTRY or not default_path(name).is_file():
        return None
    return default_path(name)


def _stylemask(ckpt: str | None) -> Loaded:
    from projects.stylemask.inference import load_for_inference

    if ckpt:
        return Loaded(load_for_inference(ckpt), f"your checkpoint {ckpt}")
    return _released_or_faceworld(
        "stylemask", lambda: load_for_inference(None), "released mask network (FFHQ 1024)", load_for_inference
    )


def _hyperreenact(ckpt: str | None) -> Loaded:
    from projects.hyperreenact.inference import build_net

    if ckpt:
        return Loaded(build_net(checkpoint=ckpt), f"your checkpoint {ckpt}")
    return _released_or_faceworld(
        "hyperreenact", build_net, "released hypernetwork (VoxCeleb 256)", lambda p: build_net(checkpoint=str(p))
    )


def _dferclip(ckpt: str | None) -> Loaded:
    from projects.dferclip.predict import checkpoint_normalize, load_model

    if ckpt:
        model, t, size = load_model(ckpt=ckpt)
        return Loaded((model, t, size, checkpoint_normalize(ckpt)), f"your checkpoint {ckpt}")
    from common.weights import resolve

    model, t, size = load_model(official=str(resolve("dferclip_dfew_set1")))
    return Loaded((model, t, size, False), "released DFEW fold 1 checkpoint")


def _generator(ckpt: str | None) -> Loaded:
    from common.stylegan2.sample import load_any_generator

    if ckpt:
        return Loaded(load_any_generator(ckpt), f"your file {ckpt}")
    from common.weights import resolve

    return _released_or_faceworld(
        "generator",
        lambda: load_any_generator(resolve("stylegan2_ffhq_config_f")),
        "released StyleGAN2 FFHQ 1024 config-f",
        load_any_generator,
    )


def _maskcon(ckpt: str | None) -> Loaded:
    if not ckpt:
        raise FileNotFoundError(
            "MaskCon has no released weights: train a checkpoint (e.g. make demo-maskcon, or "
            "python projects/maskcon/main.py fit --config projects/maskcon/configs/<experiment>.yaml) and start the "
            "app with --ckpt maskcon=runs/maskcon/<experiment>/version_0/checkpoints/last.ckpt"
        )
    from projects.maskcon.retrieve import load_gallery

    _, gallery = load_gallery(ckpt)
    return Loaded(gallery, f"your checkpoint {ckpt} ({len(gallery)} test images embedded)")


def _released_or_faceworld(tab: str, released: Callable[[], Any], what: str, from_file: Callable[[Any], Any]) -> Loaded:
    from common.weights import MissingWeightsError

    try:
        return Loaded(released(), what)
    except MissingWeightsError:
        path = _faceworld_path(tab)
        if path is None:
            raise
        return Loaded(from_file(path), f"shipped face-world model {path}")


_LOADERS: dict[str, Callable[[str | None], Loaded]] = {
    "stylemask": _stylemask,
    "hyperreenact": _hyperreenact,
    "dferclip": _dferclip,
    "generator": _generator,
    "maskcon": _maskcon,
}


class ModelStore:
    """Loads each tab's model once, on first use (so the page opens at once), and keeps it.

    ``ckpts`` maps a tab name to the user's file. A failed load is not cached: putting the missing file in place
    and pressing the button again works without restarting the app.
    """

    def __init__(self, ckpts: dict[str, str] | None = None) -> None:
        ckpts = dict(ckpts or {})
        unknown = sorted(set(ckpts) - set(TABS))
        if unknown:
            raise ValueError(f"--ckpt names unknown tab(s) {unknown}; choose from {list(TABS)}")
        self.ckpts = ckpts
        self._cache: dict[str, Loaded] = {}
        self._lock = threading.Lock()

    def get(self, tab: str) -> Loaded:
        """The model of ``tab``; raises the loader's error (e.g. ``MissingWeightsError``) when unavailable."""
        with self._lock:
            if tab not in self._cache:
                self._cache[tab] = _LOADERS[tab](self.ckpts.get(tab))
            return self._cache[tab]

"""`make reproduce-stylemask` without the artifacts stops at once and names every missing file."""

from __future__ import annotations

import pytest

from projects.stylemask import reproduce


def test_reproduce_lists_missing_files(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        reproduce.main([])
    assert exc.value.code == 2
    out = capsys.readouterr().out
    for name in reproduce.SYNTHETIC:
        assert name in out
    assert "mask_network_1024.pt" in out and "random_latent_codes_100.npy" in out
    (tmp_path / "vox").mkdir()
    with pytest.raises(SystemExit):
        reproduce.main(["--voxceleb", str(tmp_path / "vox")])
    out = capsys.readouterr().out
    assert all(name in out for name in reproduce.VOXCELEB)

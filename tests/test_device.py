"""`device = "auto"`: CUDA when torch sees a GPU, else Apple's Metal (mps), else the CPU.

No GPU and no Mac run here: torch's own availability probes are switched for these tests
(the selection rule is what is tested, not the devices).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from importer.errors import ModelError  # noqa: E402
from importer.generate.musicgen import resolve_device  # noqa: E402


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [
        (True, True, "cuda"),
        (False, True, "mps"),
        (False, False, "cpu"),
    ],
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto").type == expected


def test_asking_for_a_missing_device_says_so(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ModelError, match="no Apple Metal device"):
        resolve_device("mps")
    assert resolve_device("cpu").type == "cpu"


def test_the_config_accepts_mps(tmp_path):
    from importer.config import load_config

    (tmp_path / "trackspec.toml").write_text('device = "mps"\n')
    assert load_config(tmp_path).device == "mps"
    (tmp_path / "trackspec.toml").write_text('device = "metal"\n')
    with pytest.raises(Exception, match="'auto', 'cuda', 'mps', 'cpu'"):
        load_config(tmp_path)

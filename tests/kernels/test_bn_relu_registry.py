"""bn_relu="eager" | "triton" | "auto" in create_model; triton is imported only when asked for."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO
from fastcifar.models import BN_RELU_CHOICES, create_model, norms


def test_importing_the_models_does_not_import_triton():
    code = "import sys, fastcifar.models; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_triton_without_triton_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    monkeypatch.delitem(norms.BN_RELU_IMPLS, "triton", raising=False)
    with pytest.raises(ImportError, match="needs the triton package"):
        create_model("cnn", bn_relu="triton")


def test_auto_is_triton_only_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert norms.resolve_bn_relu("auto") is norms.EAGER
    pytest.importorskip("triton")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    from fastcifar.models.fused import TRITON

    assert norms.resolve_bn_relu("auto") is TRITON


def test_triton_models_keep_batchnorm_state_dict_keys():
    pytest.importorskip("triton")
    fused, eager = create_model("resnet_final", bn_relu="triton"), create_model("resnet_final")
    assert fused.state_dict().keys() == eager.state_dict().keys()
    fused.load_state_dict(eager.state_dict())  # checkpoints move both ways
    assert set(BN_RELU_CHOICES) == {"eager", "triton", "auto"}

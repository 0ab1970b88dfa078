"""The environment: a matching torch/torchvision pair and the libraries the framework builds on."""

from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_torchvision_ops_run_against_installed_torch() -> None:
    # A torchvision built for another torch fails here with "operator torchvision::nms does not exist".
    import torchvision
    from torchvision.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torchvision.__version__.split("+")[0]


def test_torch_fidelity_imports_and_computes() -> None:
    import torch_fidelity
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    feats = torch.randn(200, 8, generator=torch.Generator().manual_seed(0)).double()
    stats = fid_features_to_statistics(feats)
    fid = fid_statistics_to_metric(stats, stats, verbose=False)["frechet_inception_distance"]
    assert abs(fid) < 1e-6
    assert hasattr(torch_fidelity, "register_feature_extractor")


def test_constraints_pin_the_installed_torch_pair() -> None:
    import torchvision

    pins = dict(
        line.strip().split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == torch.__version__.split("+")[0]
    assert pins["torchvision"] == torchvision.__version__.split("+")[0]

"""metrics=inception offline: a clear Error line without weights, and the weights-file path."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

from src.metrics import InceptionMetrics, extract_features, load_inception
from src.metrics.cache import state_dict_sha256
from src.metrics.inception import WEIGHTS_FILE
from src.train import main as train_main
from tests.test_errors import assert_one_error_line, run_main


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch) -> Path:
    """An empty torch hub directory and no network."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return hub


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """A randomly initialised inception-v3-compat state dict (the real one cannot be downloaded here)."""
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *args, **kwargs: None)
        patch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        network = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(network.state_dict(), path)
    return path


def test_missing_weights_end_in_one_error_line_before_training(
    offline_hub, tmp_path, capsys, data_root
) -> None:
    code, err = run_main(train_main, ["metrics=inception", "data.source=files"], tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(
        code, err, WEIGHTS_FILE, str(offline_hub / "checkpoints"), "metrics.inception_weights="
    )
    assert not list((tmp_path / "logs").rglob("*.ckpt"))


def test_weights_path_that_does_not_exist(tmp_path, capsys, data_root) -> None:
    code, err = run_main(
        train_main,
        ["metrics=inception", "metrics.inception_weights=/no/such/file.pth"],
        tmp_path,
        capsys,
        data_root,
    )
    assert_one_error_line(
        code, err, "metrics.inception_weights=/no/such/file.pth does not exist", WEIGHTS_FILE
    )


def test_weights_file_loads_and_scores_grey_images(
    offline_hub, random_inception_weights, mnist_files
) -> None:
    extractor = load_inception(str(random_inception_weights))
    assert extractor.weights_sha256 == state_dict_sha256(
        torch.load(random_inception_weights, weights_only=False)
    )
    grey = mnist_files.split("test")[0][:3]
    features = extract_features(extractor, grey)
    assert features.features.shape == (3, 2048) and features.logits.shape == (3, 1008)
    # Grey images are Inception's RGB input with equal channels.
    rgb = extract_features(extractor, grey.expand(-1, 3, -1, -1).contiguous())
    assert torch.allclose(features.features, rgb.features)
    # The metrics option checks and loads the same file.
    callback = InceptionMetrics(cache_dir="unused", inception_weights=str(random_inception_weights))
    callback.prepare(mnist_files)
    assert callback.extractor.describe()["extractor_sha256"] == extractor.weights_sha256
    assert callback.extractor.describe()["extractor"] == "inception-v3-compat"


def test_hub_cache_is_used_when_no_path_is_given(offline_hub, random_inception_weights) -> None:
    (offline_hub / "checkpoints").mkdir(parents=True)
    (offline_hub / "checkpoints" / WEIGHTS_FILE).write_bytes(random_inception_weights.read_bytes())
    assert load_inception().weights_path == str(offline_hub / "checkpoints" / WEIGHTS_FILE)

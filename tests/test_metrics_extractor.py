"""The domain feature extractor: training, the on-disk cache and its key, the adapters."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import src.metrics.domain as domain
from src.data import FashionMnistDataModule, ImageFolderDataModule
from src.metrics import Scorer, TorchmetricsFeature, TrainingRecipe, load_extractor, score_samples
from src.metrics.cache import state_dict_sha256
from tests.conftest import make_image_folder

TINY = TrainingRecipe(epochs=1)


def test_second_load_comes_from_the_cache_without_training(
    mnist_files, tmp_path: Path, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="src.metrics.domain")
    first = load_extractor(mnist_files, tmp_path, recipe=TINY)
    assert "training the domain feature extractor for mnist" in caplog.text
    path = Path(first.meta["path"])
    assert path.parent == tmp_path / "extractors" and path.is_file()
    assert first.weights_sha256 == state_dict_sha256(first.network.state_dict())

    def no_training(*args, **kwargs):
        raise AssertionError("the cached extractor was trained again")

    monkeypatch.setattr(domain, "train_extractor", no_training)
    second = load_extractor(mnist_files, tmp_path, recipe=TINY)
    assert second.weights_sha256 == first.weights_sha256
    assert second.meta["test_accuracy"] == first.meta["test_accuracy"]


def test_cache_key_follows_the_data_the_recipe_and_the_architecture(mnist_files, data_root: Path) -> None:
    fashion = FashionMnistDataModule(data_dir=str(data_root), source="files")
    fashion.prepare_data()
    keys = {
        "mnist": domain.extractor_key(mnist_files, "lenet", TINY),
        "fashion": domain.extractor_key(fashion, "lenet", TINY),
        "seed": domain.extractor_key(mnist_files, "lenet", TrainingRecipe(epochs=1, seed=1)),
        "epochs": domain.extractor_key(mnist_files, "lenet", TrainingRecipe(epochs=2)),
        "arch": domain.extractor_key(mnist_files, "resnet", TINY),
    }
    assert len(set(keys.values())) == len(keys)
    assert domain.extractor_key(mnist_files, "lenet", TINY) == keys["mnist"]


def test_training_leaves_the_callers_random_state_alone(mnist_files, tmp_path: Path) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    load_extractor(mnist_files, tmp_path, recipe=TINY, retrain=True)
    assert torch.equal(torch.get_rng_state(), state)


def test_unreadable_or_tampered_cache_file_is_retrained(mnist_files, tmp_path: Path) -> None:
    extractor = load_extractor(mnist_files, tmp_path, recipe=TINY)
    path = Path(extractor.meta["path"])
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.bias"] += 1.0
    torch.save(payload, path)
    assert load_extractor(mnist_files, tmp_path, recipe=TINY).weights_sha256 == extractor.weights_sha256
    path.write_bytes(b"not a checkpoint")
    assert load_extractor(mnist_files, tmp_path, recipe=TINY).weights_sha256 == extractor.weights_sha256


def test_classifier_and_adapters(mnist_files, mnist_extractor) -> None:
    x, y = mnist_files.split("test")
    logits = mnist_extractor.classify(x)
    assert logits.shape == (len(x), 10) and mnist_extractor.class_names[0].startswith("0")
    # Better than chance after a short training on 216 images.
    assert (logits.argmax(1) == y).double().mean() > 0.3
    features, logits_too = mnist_extractor(x[:5])
    assert features.shape == (5, 128) and torch.allclose(logits_too, logits[:5], atol=1e-5)
    adapter = TorchmetricsFeature(mnist_extractor)
    assert adapter.num_features == 128 and torch.allclose(adapter(x[:5]), features)


def test_unlabelled_images_train_a_rotation_extractor_without_inception_score(tmp_path: Path) -> None:
    root = tmp_path / "images"
    make_image_folder(root, classes=("shapes",), per_class=40)
    for image in (root / "shapes").iterdir():
        image.rename(root / image.name)  # no class sub-folders: unlabelled
    (root / "shapes").rmdir()
    datamodule = ImageFolderDataModule(
        root=str(root),
        data_dir=str(tmp_path),
        image_size=16,
        channels=3,
        val_fraction=0.25,
        test_fraction=0.25,
        batch_size=8,
    )
    datamodule.resolve_spec()
    datamodule.prepare_data()
    assert datamodule.num_classes == 0
    extractor = load_extractor(datamodule, tmp_path / "cache", recipe=TINY)
    assert extractor.meta["task"] == "rotation" and extractor.meta["arch"] == "lenet"
    assert not extractor.has_class_logits
    scorer = Scorer(extractor)
    assert "is" not in scorer.score_names()
    scores, protocol = score_samples(datamodule.split("val")[0], datamodule, "test", scorer=scorer)
    assert "is" not in scores and scores["fid"] >= 0
    assert protocol["extractor"] == "domain-lenet-rotation"


@pytest.mark.parametrize("arch", ["lenet", "resnet"])
def test_architectures_run_at_every_supported_size(arch: str) -> None:
    for size in (16, 28, 32, 64):
        network = domain.build_network(arch, 3, size, 10).eval()
        features, logits = network(torch.zeros(2, 3, size, size))
        assert features.shape == (2, 128) and logits.shape == (2, 10)

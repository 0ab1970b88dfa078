"""Loading a trained model from Python: one call per model family, as the README shows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.models import GanModule, GenerativeModule, VaeModule
from src.runtime import load_run
from src.train import train
from src.utils.errors import UserError

FAMILIES = {
    "vae": ["model=vae", "model.width=8", "model.latent_dim=4", "model.iwae_samples=2"],
    "cvae": ["model=cvae", "model.width=8", "model.latent_dim=4", "model.iwae_samples=2"],
    "dcgan": ["model=dcgan", "model.g_width=8", "model.d_width=8", "model.latent_dim=8", "model.n_critic=1"],
    "cgan": ["model=cgan", "model.g_width=8", "model.d_width=8", "model.latent_dim=8", "model.n_critic=1"],
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_model_family_loads_from_its_checkpoint_in_one_call(make_cfg, family: str) -> None:
    cfg = make_cfg(
        "train", [*FAMILIES[family], "data.source=files", "metrics=none", "model.monitor=null", "test=false"]
    )
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    trained = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]

    model = GenerativeModule.from_checkpoint(ckpt)
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key
    images = model.sample(4)
    assert images.shape == (4, 1, 28, 28) and 0 <= float(images.min()) <= float(images.max()) <= 1

    # Lightning's own loader works too, and answers with the same weights.
    kind = VaeModule if family in ("vae", "cvae") else GanModule
    lightning_loaded = kind.load_from_checkpoint(ckpt)
    assert all(torch.equal(v, trained[k]) for k, v in lightning_loaded.state_dict().items())
    other = GanModule if kind is VaeModule else VaeModule
    with pytest.raises(UserError, match=f"not a {other.__name__}"):
        other.from_checkpoint(ckpt)

    run = load_run(ckpt, hardware="cpu")
    assert type(run.model) is kind
    x, _ = run.datamodule.split("test")
    assert x.dtype == torch.uint8 and len(x) > 0
    assert all(torch.equal(v, trained[k]) for k, v in run.model.state_dict().items())


def test_a_missing_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        GenerativeModule.from_checkpoint(tmp_path / "nope.ckpt")


def test_python_scores_are_the_ones_src_eval_writes(make_cfg, trained_checkpoints) -> None:
    from src.eval import evaluate
    from src.metrics import score_samples

    ckpt = trained_checkpoints["cvae"]
    tested = evaluate(make_cfg("eval", [f"ckpt_path={ckpt}", "hardware=cpu"])).metrics
    run = load_run(ckpt, hardware="cpu")
    assert not run.model.training
    scorer = run.scorer()
    scores, protocol = score_samples(run.model.sample, run.datamodule, "test", scorer=scorer, n_fake=64)
    # The same samples in the same feature space (float32 features; FID's matrix square root of a
    # 64-sample covariance magnifies their last bits, hence 1e-3 rather than exact equality).
    assert scores["fid"] == pytest.approx(tested["test/fid"], rel=1e-3)
    for name in ("precision", "coverage", "detection_auc"):
        assert scores[name] == pytest.approx(tested[f"test/{name}"], rel=1e-5), name
    assert protocol["reference/real/fid"] is not None and "verdict" in protocol

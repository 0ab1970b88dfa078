"""The maths under the models: GAN losses, penalties, the VAE's KL and its likelihood bounds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.models.gan import discriminator_accuracy
from src.models.losses import GradientPenalty, HingeLoss, NonSaturatingLoss, R1Penalty, WassersteinLoss
from src.models.vae import VaeModule, gaussian_kl

LOG2 = math.log(2.0)


# ------------------------------------------------------------------------------ GAN losses
def test_non_saturating_loss_known_values() -> None:
    loss = NonSaturatingLoss()
    zero = torch.zeros(4)
    # D(x) = 1/2 everywhere: binary cross-entropy log 2 per term.
    assert loss.discriminator(zero, zero).item() == pytest.approx(2 * LOG2)
    assert loss.generator(zero).item() == pytest.approx(LOG2)
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected = F.binary_cross_entropy(torch.sigmoid(real), torch.ones(2)) + F.binary_cross_entropy(
        torch.sigmoid(fake), torch.zeros(2)
    )
    assert loss.discriminator(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.generator(fake).item() == pytest.approx(
        -torch.log(torch.sigmoid(fake)).mean().item(), rel=1e-6
    )


def test_wasserstein_and_hinge_loss_known_values() -> None:
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.5])
    wgan = WassersteinLoss()
    assert wgan.discriminator(real, fake).item() == pytest.approx(fake.mean().item() - real.mean().item())
    assert wgan.generator(fake).item() == pytest.approx(-fake.mean().item())
    hinge = HingeLoss()
    # relu(1 - real) = [0, 0.5, 2]; relu(1 + fake) = [0, 1, 2.5]
    assert hinge.discriminator(real, fake).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert hinge.generator(fake).item() == pytest.approx(-fake.mean().item())


def test_discriminator_accuracy_measures_separation_not_the_sign_of_the_outputs() -> None:
    # A critic whose outputs drifted below 0 yet tells every pair apart (issue: it read 0.5, "fooled").
    real, fake = torch.full((8,), -2.40), torch.full((8,), -4.73)
    real, fake = real + torch.linspace(0, 0.1, 8), fake - torch.linspace(0, 0.1, 8)
    assert discriminator_accuracy(real, fake).item() == 1.0
    assert discriminator_accuracy(fake, real).item() == 0.0  # prefers the samples
    assert discriminator_accuracy(real + 100, fake + 100).item() == 1.0  # offset-free
    # Pairs: real [1, 2, -0.5, 3] vs fake [-1, 0.5, -2, -3]: 15 of 16 right (-0.5 < 0.5); a tie counts half.
    real, fake = torch.tensor([1.0, 2.0, -0.5, 3.0]), torch.tensor([-1.0, 0.5, -2.0, -3.0])
    assert discriminator_accuracy(real, fake).item() == pytest.approx(15 / 16)
    assert discriminator_accuracy(torch.tensor([0.0]), torch.tensor([0.0, -1.0])).item() == pytest.approx(
        0.75
    )
    # Indistinguishable outputs: about 0.5, as torchmetrics' ROC AUC.
    from torchmetrics.functional.classification import binary_auroc

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, generator=g), torch.randn(200, generator=g)
    auc = binary_auroc(torch.cat([real, fake]), torch.cat([torch.ones(300), torch.zeros(200)]).long())
    assert discriminator_accuracy(real, fake).item() == pytest.approx(auc.item(), abs=1e-6)


# ------------------------------------------------------------------------------ penalties
class Linear(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.weight.flatten()).sum(1) + 0.3


def test_gradient_penalty_of_a_linear_critic_is_closed_form() -> None:
    # grad_x (w . x + b) = w everywhere: GP = weight * (||w|| - 1)^2 on any interpolate.
    w = torch.tensor([[3.0, 4.0], [0.0, 12.0]])  # ||w|| = 13
    critic = Linear(w)
    real, fake = torch.randn(8, 2, 2), torch.randn(8, 2, 2)
    penalty = GradientPenalty(10.0)(critic, real, fake, torch.Generator().manual_seed(0))
    assert penalty.item() == pytest.approx(10.0 * (13.0 - 1.0) ** 2)
    # The penalty's gradient reaches the critic: d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||.
    penalty.backward()
    torch.testing.assert_close(critic.weight.grad, 20 * 12 * w / 13)


def test_r1_penalty_is_half_the_squared_gradient_norm_on_real_data() -> None:
    critic = Linear(torch.tensor([[1.0, 2.0], [2.0, 0.0]]))  # ||w||^2 = 9
    real = torch.randn(5, 2, 2)
    assert R1Penalty(4.0)(critic, real, real, torch.Generator()).item() == pytest.approx(0.5 * 4.0 * 9.0)

    # Quadratic critic D(x) = ||x||^2 / 2: grad = x, R1 = weight / 2 * mean ||x||^2.
    def quadratic(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x.flatten(1) ** 2).sum(1)

    expected = 0.5 * 2.0 * (real.flatten(1) ** 2).sum(1).mean()
    assert R1Penalty(2.0)(quadratic, real, real, torch.Generator()).item() == pytest.approx(
        expected.item(), rel=1e-6
    )


# ------------------------------------------------------------------------------ VAE
def test_closed_form_kl_matches_torch_distributions_and_a_monte_carlo_estimate() -> None:
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    logvar = torch.randn(3, 4, generator=generator, dtype=torch.float64) * 0.5
    kl = gaussian_kl(mean, logvar).double()
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(1), rtol=1e-5, atol=1e-6)
    # E_q[log q(z) - log p(z)] by Monte Carlo, 200,000 draws: within 4 standard errors.
    z = q.sample((200_000,))
    terms = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    standard_error = terms.std(0) / math.sqrt(len(terms))
    assert torch.all((terms.mean(0) - kl).abs() < 4 * standard_error)


@pytest.fixture(scope="module")
def tiny_vae() -> VaeModule:
    torch.manual_seed(0)
    model = VaeModule(
        image_size=28,
        channels=1,
        latent_dim=4,
        width=8,
        norm="none",
        optimizer=lambda params: torch.optim.Adam(params),
    )
    return model.eval()


def _elbo(model: VaeModule, x: torch.Tensor, seed: int) -> torch.Tensor:
    with torch.no_grad():
        log_px, kl = model.elbo_terms(x, None, torch.Generator().manual_seed(seed))
    return log_px - kl


def test_iwae_bound_is_at_least_the_elbo_and_equals_it_in_expectation_at_k_1(tiny_vae: VaeModule) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.2), generator=generator)
    draws = 200
    elbo = torch.stack([_elbo(tiny_vae, x, seed) for seed in range(draws)])  # (draws, images)
    iwae_1 = torch.stack(
        [-tiny_vae.iwae_nll(x, None, 1, torch.Generator().manual_seed(10_000 + s)) for s in range(draws)]
    )
    iwae_50 = -tiny_vae.iwae_nll(x, None, 50, torch.Generator().manual_seed(7))
    # IWAE with K = 1 is a single-sample ELBO estimate (log p(x|z) + log p(z) - log q(z|x)): the same
    # expectation as the closed-form-KL ELBO, within 4 standard errors of the difference.
    standard_error = (elbo.var(0) / draws + iwae_1.var(0) / draws).sqrt()
    assert torch.all((iwae_1.mean(0) - elbo.mean(0)).abs() < 4 * standard_error)
    # log (1/K sum w_k) >= 1/K sum log w_k: the K = 50 bound lies above the ELBO.
    assert torch.all(iwae_50 > elbo.mean(0))

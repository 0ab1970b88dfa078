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


def test_discriminator_accuracy_uses_the_losss_threshold() -> None:
    real, fake = torch.tensor([1.0, 2.0, -0.5, 3.0]), torch.tensor([-1.0, 0.5, -2.0, -3.0])
    # Threshold 0: real right 3/4, fake right 3/4.
    assert discriminator_accuracy(real, fake, NonSaturatingLoss()).item() == pytest.approx(0.75)
    # Wasserstein: midpoint of the means (1.375 and -1.375 -> 0): the same split here, shifted critic alike.
    assert discriminator_accuracy(real + 10, fake + 10, WassersteinLoss()).item() == pytest.approx(0.75)
    assert discriminator_accuracy(fake, real, HingeLoss()).item() == pytest.approx(0.25)


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

"""Adversarial objectives and discriminator penalties, composed by :class:`~src.models.gan.GanModule`.

A loss turns critic outputs (one logit per sample) into the discriminator's and the generator's
loss; a penalty is an extra discriminator term. Both compute in float32 whatever the autocast
dtype of the networks, so bf16 training keeps exact penalty gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from src.utils.types import PositiveFloat

Critic = Callable[[Tensor], Tensor]


class GanLoss:
    """Adversarial loss: ``discriminator(real, fake)`` and ``generator(fake)`` from critic outputs.

    ``lipschitz_critic`` says whether the loss needs a Lipschitz-constrained critic (a gradient
    penalty or spectral norm) to be well defined.
    """

    lipschitz_critic = False

    def discriminator(self, real: Tensor, fake: Tensor) -> Tensor:
        real_terms, fake_terms = self.discriminator_terms(real, fake)
        return real_terms.mean() + fake_terms.mean()

    def discriminator_terms(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """The discriminator loss per sample: ``(term of each real, term of each fake)``.

        Every loss here is a mean over real samples plus a mean over fakes; private training
        (``privacy=dp``) needs the terms themselves, to clip each sample's gradient.
        """
        raise NotImplementedError

    def generator(self, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NonSaturatingLoss(GanLoss):
    """The original GAN (Goodfellow et al. 2014) with the non-saturating generator loss.

    D minimises the binary cross-entropy of real -> 1, fake -> 0; G minimises ``-log D(G(z))``
    (``softplus(-logit)``), which keeps gradients alive while D rejects G's samples easily.
    """

    def discriminator_terms(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        return F.softplus(-real.float()), F.softplus(fake.float())

    def generator(self, fake: Tensor) -> Tensor:
        return F.softplus(-fake.float()).mean()


class WassersteinLoss(GanLoss):
    """WGAN (Arjovsky et al. 2017): the critic estimates ``E[D(real)] - E[D(fake)]``.

    A Wasserstein-1 estimate only under a Lipschitz constraint: pair it with :class:`GradientPenalty`
    (WGAN-GP) or spectral norm.
    """

    lipschitz_critic = True

    def discriminator_terms(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        return -real.float(), fake.float()

    def generator(self, fake: Tensor) -> Tensor:
        return -fake.float().mean()


class HingeLoss(GanLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018, SNGAN; BigGAN)."""

    def discriminator_terms(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        return F.relu(1.0 - real.float()), F.relu(1.0 + fake.float())

    def generator(self, fake: Tensor) -> Tensor:
        return -fake.float().mean()


def _input_gradient_norms(critic: Critic, x: Tensor) -> Tensor:
    """``||grad_x D(x)||_2`` per sample, kept in the graph so the penalty can be minimised."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).float().sum(), x, create_graph=True)
    return grad.float().flatten(1).norm(2, dim=1)


class GradientPenalty:
    """WGAN-GP (Gulrajani et al. 2017): ``weight * E[(||grad D(x_hat)|| - 1)^2]``.

    ``x_hat`` are uniform random interpolates between real and generated samples.
    """

    name = "gp"

    def __init__(self, weight: PositiveFloat = 10.0) -> None:
        self.weight = weight

    def __call__(self, critic: Critic, real: Tensor, fake: Tensor, generator: torch.Generator) -> Tensor:
        shape = (len(real),) + (1,) * (real.dim() - 1)
        alpha = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
        norms = _input_gradient_norms(critic, torch.lerp(real, fake.to(real.dtype), alpha))
        return self.weight * ((norms - 1.0) ** 2).mean()


class R1Penalty:
    """R1 (Mescheder et al. 2018): ``weight / 2 * E[||grad D(x_real)||^2]`` on real data only."""

    name = "r1"

    def __init__(self, weight: PositiveFloat = 10.0) -> None:
        self.weight = weight

    def __call__(self, critic: Critic, real: Tensor, fake: Tensor, generator: torch.Generator) -> Tensor:
        return 0.5 * self.weight * (_input_gradient_norms(critic, real) ** 2).mean()

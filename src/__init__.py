"""genlab: config-driven experiments with generative models (GANs, VAEs) on Lightning + Hydra."""

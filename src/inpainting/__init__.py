"""Restoring missing pixels (``src.inpaint``): masks, baselines, scores and the export of filled images.

The filling itself is the model's: ``model.inpaint(images_uint8, mask)`` (VAE: conditional
sampling given the observed pixels; GAN: latent optimisation), which never changes an observed pixel.
"""

"""Network building blocks shared by the VAE and GAN modules."""

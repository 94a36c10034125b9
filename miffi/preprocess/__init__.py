"""Preprocess: micrographs → squares → the model's tensors and the Fourier-space metrics, cached."""

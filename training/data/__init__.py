"""Training data: reading sources, `prepare` (detect and align), the input pipelines."""

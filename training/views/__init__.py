"""The CLIP view: cached features, its head, the fusion with the CNN, and their tables."""

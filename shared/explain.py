"""Grad-CAM maps from the exported model's `explain` signature, and their picture.

The signature gives the last conv block's activations A and Grad-CAM's channel weights: the fake
logit's gradient with respect to A, averaged over space. The map keeps the positive part of the
weighted sum, relu(sum_k w_k A_k). For a "real" answer the weights' sign flips, so the map shows
what pushed the model towards the answer it gave.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# A perceptually ordered dark-to-bright ramp (black, purple, red, orange, pale yellow), close to
# matplotlib's "inferno", which serving does not install.
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float32,
)
_LUT = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), c) for c in _ANCHORS.T],
    axis=1,
).astype(np.uint8)
ALPHA = 0.7  # the heat map's share of the hottest pixels; cold ones show the face unchanged


def grad_cam(features: np.ndarray, weights: np.ndarray, fake: bool) -> np.ndarray:
    """(h, w, k) activations and (k,) channel weights of one face -> (h, w) map in [0, 1]."""
    cam = np.maximum(features @ (weights if fake else -weights), 0.0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)


def overlay(pixels: np.ndarray, cam: np.ndarray) -> Image.Image:
    """The face as the model saw it (uint8, HxW or HxWx3) with the map, upsampled smoothly,
    blended over it in proportion to its heat."""
    face = Image.fromarray(pixels.squeeze()).convert("RGB")
    heat = Image.fromarray(np.uint8(np.rint(cam * 255))).resize(face.size, Image.Resampling.BICUBIC)
    level = np.asarray(heat)
    alpha = (ALPHA / 255) * level[..., None].astype(np.float32)
    mixed = (1 - alpha) * np.asarray(face, np.float32) + alpha * _LUT[level]
    return Image.fromarray(np.uint8(np.clip(np.rint(mixed), 0, 255)))

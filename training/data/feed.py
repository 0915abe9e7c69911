"""The input pipeline without TensorFlow: a `keras.utils.PyDataset` over the same decoded-pixel
cache as the tf.data pipeline (`pipeline.make_dataset`), for the JAX and PyTorch backends.

Batches are gathered from the uint8 cache, augmented in numpy and PIL (the same augmentations,
order and ranges as pipeline.py's TensorFlow ones, drawn from numpy's generator, so the two
paths agree in distribution, not pixel for pixel), then scaled by exactly `to_input`'s
arithmetic: un-augmented batches equal serving's inputs bit for bit, as on the tf.data path.
Order and augmentations are fixed by (seed, epoch, batch): a resumed run sees the batches the
interrupted one would have seen.
"""

from __future__ import annotations

import io
import math
import os

import keras
import numpy as np
from PIL import Image

from shared.model import ModelSpec

from .datasets import DataError
from .pipeline import (
    BORDER,
    BRIGHTNESS,
    CHANNEL_GAIN,
    CONTRAST,
    GAMMA,
    NO_AUGMENT,
    NOISE_SIGMA,
    SATURATION,
    Augment,
)

# Threads, not processes, fill the queue: numpy and PIL release the GIL in the work that counts,
# and threads need no pickling of a memory-mapped cache (nor Windows' spawn).
MAX_WORKERS = 8


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored at the edges, edge pixel repeated (d c b a | a b c d | d c b a), as
    TensorFlow's REFLECT fill mode for image transforms."""
    idx = np.mod(idx, 2 * n)
    return np.where(idx >= n, 2 * n - 1 - idx, idx)


def affine(batch: np.ndarray, rot: np.ndarray, shear: np.ndarray) -> np.ndarray:
    """Rotate and shear each image of float32 NHWC `batch` about its centre (angles in
    radians), bilinear, edges reflected: pipeline._affine's transform."""
    n, size = batch.shape[0], batch.shape[1]
    cos, sin, tan = np.cos(rot), np.sin(rot), np.tan(shear)
    # output -> input mapping R(rot) @ [[1, tan], [0, 1]] about the centre c (pipeline._affine)
    a0, a1 = cos, cos * tan - sin
    b0, b1 = sin, sin * tan + cos
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs, ys = xs[None] - c, ys[None] - c
    src_x = a0[:, None, None] * xs + a1[:, None, None] * ys + c
    src_y = b0[:, None, None] * xs + b1[:, None, None] * ys + c
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx, fy = (src_x - x0)[..., None], (src_y - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    x1, y1 = _reflect(x0 + 1, size), _reflect(y0 + 1, size)
    x0, y0 = _reflect(x0, size), _reflect(y0, size)
    b = np.arange(n)[:, None, None]
    top = batch[b, y0, x0] * (1 - fx) + batch[b, y0, x1] * fx
    bottom = batch[b, y1, x0] * (1 - fx) + batch[b, y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def blur(image: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """Separable Gaussian blur of one float32 HWC image, edges reflected (pipeline's kernel)."""
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / np.float32(sigma)) ** 2)
    k /= k.sum()
    size = image.shape[0]
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(k[i] * padded[:, i : i + size] for i in range(len(k)))
    return sum(k[i] * rows[i : i + size] for i in range(len(k))).astype(np.float32)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-compress one float32 HWC image (0-255) as JPEG at `quality` and decode it."""
    u8 = np.clip(np.round(image), 0, 255).astype(np.uint8)
    pil = Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    with Image.open(buf) as out:
        return np.asarray(out, np.float32).reshape(image.shape)


def down_up(image: np.ndarray, side: int) -> np.ndarray:
    """Shrink one float32 HWC image to side×side (antialiased) and back, per channel in
    float ("F" mode), as a photo shared at a smaller size would be."""
    size = image.shape[0]
    out = np.empty_like(image)
    for ch in range(image.shape[-1]):
        plane = Image.fromarray(np.ascontiguousarray(image[..., ch]), mode="F")
        small = plane.resize((side, side), Image.Resampling.BILINEAR)
        out[..., ch] = np.asarray(small.resize((size, size), Image.Resampling.BILINEAR))
    return out


def tone(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, brightness and (colour) saturation and white balance of one float32
    HWC image: pipeline._tone_noise_one's shift, drawn from the same ranges."""
    gamma = np.exp(rng.uniform(np.log(GAMMA[0]), np.log(GAMMA[1])))
    x = 255.0 * (np.clip(image, 0, 255) / 255.0) ** gamma
    x = x.mean() + rng.uniform(*CONTRAST) * (x - x.mean()) + rng.uniform(*BRIGHTNESS)
    if image.shape[-1] == 3:
        gray = x.mean(axis=-1, keepdims=True)
        x = gray + rng.uniform(*SATURATION) * (x - gray)
        x = x * rng.uniform(*CHANNEL_GAIN, 3)
    return np.clip(x, 0, 255).astype(np.float32)


def noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise on one float32 HWC image, sigma drawn from NOISE_SIGMA."""
    grain = rng.normal(0.0, rng.uniform(*NOISE_SIGMA), image.shape)
    return np.clip(image + grain, 0, 255).astype(np.float32)


def border(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Black bars on two opposite sides of one HWC image (pipeline._border_one)."""
    size = image.shape[0]
    width = int(round(rng.uniform(*BORDER) * size))
    out = image.copy()
    if rng.random() < 0.5:
        out[:width], out[size - width :] = 0, 0
    else:
        out[:, :width], out[:, size - width :] = 0, 0
    return out


def augment_batch(batch: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """float32 pixel values (0-255) NHWC -> augmented, same shape: pipeline.augment_batch's
    steps and ranges (tone, noise, blur, JPEG, resize, border per image; then flip; then
    rotation and shear)."""
    n, size = batch.shape[0], batch.shape[1]
    if aug.per_image:
        radius = max(1, math.ceil(3 * 3.0 * size / 256))
        batch = batch.copy()
        for i in range(n):
            coin = rng.random(3)
            if aug.tone or aug.noise or aug.border:  # drawn only then: older runs replay exactly
                camera = rng.random(3)
                if aug.tone and camera[0] < aug.tone:
                    batch[i] = tone(batch[i], rng)
                if aug.noise and camera[1] < aug.noise:
                    batch[i] = noise(batch[i], rng)
            if aug.blur and coin[0] < aug.blur:
                batch[i] = blur(batch[i], rng.uniform(0.1, 3.0 * size / 256), radius)
            if aug.jpeg and coin[1] < aug.jpeg:
                batch[i] = jpeg(batch[i], rng.integers(30, 100))
            if aug.resize and coin[2] < aug.resize:
                batch[i] = down_up(batch[i], int(rng.uniform(size / 4, size)))
            if aug.border and camera[2] < aug.border:
                batch[i] = border(batch[i], rng)
    if aug.flip:
        flip = rng.random(n) < 0.5
        batch = np.where(flip[:, None, None, None], batch[:, :, ::-1], batch)
    if aug.rotation or aug.shear:
        rot = rng.uniform(-aug.rotation, aug.rotation, n) * (math.pi / 180)
        shr = rng.uniform(-aug.shear, aug.shear, n) * (math.pi / 180)
        batch = affine(batch, rot, shr)
    return batch


def order(n: int, seed: int | None, epoch: int) -> np.ndarray:
    """The epoch's order of the images: fixed by (seed, epoch); None: as stored."""
    if seed is None:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class Batches(keras.utils.PyDataset):
    """(inputs, labels[, sample weights]) batches of one epoch, for `model.fit`."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        spec: ModelSpec,
        batch_size: int,
        weights: np.ndarray | None = None,
        shuffle_seed: int | None = None,
        epoch: int = 0,
        augment: Augment = NO_AUGMENT,
        workers: int | None = None,
    ):
        if len(images) == 0:
            raise DataError("no images to feed the model")
        workers = workers or min(MAX_WORKERS, os.cpu_count() or 1)
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=2 * workers)
        self.images, self.spec, self.batch_size = images, spec, batch_size
        self.labels = np.asarray(labels, np.float32).reshape(-1, 1)
        self.weights = None if weights is None else np.asarray(weights, np.float32)
        self.seed, self.epoch, self.augment = shuffle_seed, epoch, augment
        self.order = order(len(images), shuffle_seed, epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, b: int):
        idx = self.order[b * self.batch_size : (b + 1) * self.batch_size]
        # Sorted for the gather (a memory-mapped cache reads forwards), then put back in order.
        back = np.argsort(np.argsort(idx))
        x = np.asarray(self.images[np.sort(idx)], np.float32)[back]
        if self.augment.active:
            rng = np.random.default_rng([self.seed or 0, self.epoch, b])
            x = augment_batch(x, rng, self.augment)
        # Exactly to_input's arithmetic: float32 pixels * float32(scale) + float32(offset).
        x = x * np.float32(self.spec.scale) + np.float32(self.spec.offset)
        y = self.labels[idx]
        if self.weights is None:
            return x, y
        return x, y, self.weights[idx]

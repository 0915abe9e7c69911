"""Aligned PNGs -> model inputs, exactly as serving computes them, then a tf.data pipeline.

Decoding and resizing happen once, in parallel worker processes, through `shared.model.to_input`
itself (with scale 1, offset 0), into a uint8 cache file per prepared folder and input size.
tf.data then gathers batches from that cache, augments them (switchable), and applies the same
`x * scale + offset` as `to_input`, so un-augmented batches equal serving's inputs bit for bit.
This tf.data path feeds the TensorFlow backend; `feed.py` is its TensorFlow-free twin (a Keras
PyDataset over the same cache) for the JAX and PyTorch backends.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from shared.model import ModelSpec, to_input

from .datasets import DataError, Prepared, source_of

INLINE_BELOW = 256  # fewer images than this: decode in-process, not worth starting workers


def pixels(png: str | Path, size: int, color: str) -> np.ndarray:
    """One aligned face -> uint8 HxWxC: `to_input` before its scale and offset."""
    raw = ModelSpec(name="", version="", size=size, color=color, scale=1.0, offset=0.0)
    with Image.open(png) as img:
        return to_input(img.convert("RGB"), raw).astype(np.uint8)


def _pixels_job(job: tuple[str, int, str]) -> np.ndarray:
    return pixels(*job)


def cached_pixels(
    prepared: Prepared,
    rows: list[dict[str, str]],
    size: int,
    color: str,
    workers: int | None = None,
    cache_dir: Path | None = None,
    quiet: bool = False,
) -> np.ndarray:
    """uint8 (N, size, size, C) for `rows` of one prepared folder, from (or into) a cache file.

    The cache is keyed by the exact list of files (with their sizes and modification times) and
    the input size/colour, so a different selection or a re-prepared folder never reuses stale
    pixels. Returned memory-mapped."""
    outputs = [r["output"] for r in rows]
    # Keyed by each file's size and mtime too: a re-prepared folder never reuses old pixels.
    stamps = []
    for o in outputs:
        try:
            st = (prepared.root / o).stat()
        except OSError as exc:
            raise DataError(
                f"{prepared.root / o}: aligned image missing ({exc.strerror}); re-run prepare."
            ) from exc
        stamps.append(f"{o}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha1("\n".join([str(size), color, *stamps]).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else prepared.root / "cache"
    path = folder / f"{size}-{color}-{key}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{folder}: cannot write the pixel cache ({exc}); pass --cache-dir."
        ) from exc
    channels = 1 if color == "gray" else 3
    tmp = path.with_name(path.name + f".{os.getpid()}.part.npy")
    arr = np.lib.format.open_memmap(
        tmp, mode="w+", dtype=np.uint8, shape=(len(rows), size, size, channels)
    )
    jobs = [(str(prepared.root / o), size, color) for o in outputs]
    desc = f"decoding {prepared.name} at {size}px {color}"
    if len(jobs) < INLINE_BELOW or workers == 1:
        results = map(_pixels_job, jobs)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers or os.cpu_count())
        results = pool.imap(_pixels_job, jobs, chunksize=32)
    try:
        for i, px in enumerate(
            tqdm(results, total=len(jobs), desc=desc, unit="img", disable=quiet)
        ):
            arr[i] = px
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{prepared.root}: an aligned image cannot be read ({exc}); re-run "
            "prepare on its source."
        ) from exc
    finally:
        if pool:
            pool.terminate()
    arr.flush()
    del arr
    os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


# Ranges of the real-world photo augmentations (--tone, --noise, --border), shared with feed.py:
# what a phone, a flash, a white balance and a letterboxed repost do to a real photograph.
GAMMA = (0.7, 1.4)  # exponent on [0, 1] pixel values, drawn log-uniformly
CONTRAST = (0.7, 1.35)  # about the image mean; above 1 is flash-like
BRIGHTNESS = (-25.0, 25.0)  # added, 0-255 scale
SATURATION = (0.6, 1.4)  # about each pixel's gray value (colour only)
CHANNEL_GAIN = (0.9, 1.1)  # per channel: a white-balance cast (colour only)
NOISE_SIGMA = (1.0, 8.0)  # Gaussian sensor noise, 0-255 scale, per pixel and channel
BORDER = (0.03, 0.15)  # black bars' width, share of the side, on two opposite sides


@dataclass
class Augment:
    """The paper's augmentations (flip, rotation, shear), Wang et al.'s (JPEG, blur), and the
    real-world photo ones (tone, noise, border) that keep camera photos of every kind real."""

    flip: bool = True
    rotation: float = 10.0  # max degrees, either way; 0 = off
    shear: float = 10.0  # max degrees, either way; 0 = off
    jpeg: float = 0.1  # probability of re-compressing at quality 30-100; 0 = off
    blur: float = 0.1  # probability of a Gaussian blur, sigma up to 3 px at 256²; 0 = off
    resize: float = 0.0  # probability of shrinking to 1/4-1 of the side and back; 0 = off
    tone: float = 0.0  # probability of a gamma/contrast/brightness/colour shift; 0 = off
    noise: float = 0.0  # probability of Gaussian sensor noise; 0 = off
    border: float = 0.0  # probability of black bars on two opposite sides; 0 = off

    @property
    def active(self) -> bool:
        return bool(self.flip or self.rotation or self.shear or self.per_image)

    @property
    def per_image(self) -> bool:
        """Whether any augmentation is drawn image by image (the rest are batched)."""
        return bool(self.jpeg or self.blur or self.resize or self.tone or self.noise or self.border)

    def to_json(self) -> dict:
        return asdict(self)


NO_AUGMENT = Augment(flip=False, rotation=0.0, shear=0.0, jpeg=0.0, blur=0.0, resize=0.0)


def _affine(batch, seed, aug: Augment, size: int):
    """Random rotation and shear per image, about the centre, one projective-transform op."""
    import tensorflow as tf

    n = tf.shape(batch)[0]
    rot = tf.random.stateless_uniform([n], seed, -aug.rotation, aug.rotation) * (math.pi / 180)
    shr = tf.random.stateless_uniform([n], seed + 1, -aug.shear, aug.shear) * (math.pi / 180)
    cos, sin, tan = tf.cos(rot), tf.sin(rot), tf.tan(shr)
    # output->input mapping A = R(rot) @ [[1, tan], [0, 1]], centred on the image centre.
    a0, a1 = cos, cos * tan - sin
    b0, b1 = sin, sin * tan + cos
    c = (size - 1) / 2
    a2 = c - a0 * c - a1 * c
    b2 = c - b0 * c - b1 * c
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=batch,
        transforms=transforms,
        output_shape=tf.constant([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )


def _tone_noise_one(image, seed, aug: Augment):
    """A camera's and a photographer's doing, each with its probability: gamma, contrast,
    brightness and (colour) saturation and white balance; then Gaussian sensor noise."""
    import tensorflow as tf

    coin = tf.random.stateless_uniform([2], seed + 10)
    channels = image.shape[-1]
    if aug.tone:

        def tone():
            u = tf.random.stateless_uniform([4 + channels], seed + 11)
            lo, hi = math.log(GAMMA[0]), math.log(GAMMA[1])
            gamma = tf.exp(lo + u[0] * (hi - lo))
            x = 255.0 * tf.pow(tf.clip_by_value(image, 0.0, 255.0) / 255.0, gamma)
            contrast = CONTRAST[0] + u[1] * (CONTRAST[1] - CONTRAST[0])
            x = tf.reduce_mean(x) + contrast * (x - tf.reduce_mean(x))
            x = x + BRIGHTNESS[0] + u[2] * (BRIGHTNESS[1] - BRIGHTNESS[0])
            if channels == 3:
                gray = tf.reduce_mean(x, axis=-1, keepdims=True)
                x = gray + (SATURATION[0] + u[3] * (SATURATION[1] - SATURATION[0])) * (x - gray)
                x = x * (CHANNEL_GAIN[0] + u[4:] * (CHANNEL_GAIN[1] - CHANNEL_GAIN[0]))
            return tf.clip_by_value(x, 0.0, 255.0)

        image = tf.cond(coin[0] < aug.tone, tone, lambda: image)
    if aug.noise:

        def noise():
            sigma = tf.random.stateless_uniform([], seed + 12, *NOISE_SIGMA)
            grain = tf.random.stateless_normal(tf.shape(image), seed + 13) * sigma
            return tf.clip_by_value(image + grain, 0.0, 255.0)

        image = tf.cond(coin[1] < aug.noise, noise, lambda: image)
    return image


def _border_one(image, seed, aug: Augment, size: int):
    """Black bars on two opposite sides (top and bottom, or left and right), as a letterboxed
    or screenshotted photo has them."""
    import tensorflow as tf

    u = tf.random.stateless_uniform([3], seed + 14)
    width = tf.cast(tf.round((BORDER[0] + u[1] * (BORDER[1] - BORDER[0])) * size), tf.int32)
    ramp = tf.range(size)
    keep = tf.cast((ramp >= width) & (ramp < size - width), tf.float32)
    mask = tf.where(u[2] < 0.5, keep[:, None], keep[None, :])[..., None]
    return tf.cond(u[0] < aug.border, lambda: image * mask, lambda: image)


def _one_image(image, seed, aug: Augment, size: int):
    """Every per-image augmentation in a photo's order: tone and noise (the camera), blur, JPEG
    and resize (the sharing), black bars (the repost)."""
    if aug.tone or aug.noise:
        image = _tone_noise_one(image, seed, aug)
    image = _blur_jpeg_one(image, seed, aug, size)
    if aug.border:
        image = _border_one(image, seed, aug, size)
    return image


def _blur_jpeg_one(image, seed, aug: Augment, size: int):
    """Wang et al. 2020: Gaussian blur, then JPEG re-compression, each with its probability;
    then a resize down and back up, as a photo shared at a smaller size would be."""
    import tensorflow as tf

    radius = max(1, math.ceil(3 * 3.0 * size / 256))
    coin = tf.random.stateless_uniform([3], seed)
    if aug.blur:
        sigma = tf.random.stateless_uniform([], seed + 1, 0.1, 3.0 * size / 256)
        x = tf.range(-radius, radius + 1, dtype=tf.float32)
        k = tf.exp(-0.5 * (x / sigma) ** 2)
        k = k / tf.reduce_sum(k)
        ch = image.shape[-1]
        kx = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, ch, 1])
        ky = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, ch, 1])

        def blur():
            padded = tf.pad(
                image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT"
            )
            out = tf.nn.depthwise_conv2d(padded, kx, [1, 1, 1, 1], "VALID")
            return tf.nn.depthwise_conv2d(out, ky, [1, 1, 1, 1], "VALID")[0]

        image = tf.cond(coin[0] < aug.blur, blur, lambda: image)
    if aug.jpeg:

        def jpeg():
            u8 = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            out = tf.image.stateless_random_jpeg_quality(u8, 30, 100, seed + 2)
            return tf.reshape(tf.cast(out, tf.float32), tf.shape(image))

        image = tf.cond(coin[1] < aug.jpeg, jpeg, lambda: image)
    if aug.resize:

        def resize():
            side = tf.random.stateless_uniform([], seed + 3, size / 4, size)
            small = tf.image.resize(image, tf.cast([side, side], tf.int32), antialias=True)
            return tf.image.resize(small, [size, size])

        image = tf.cond(coin[2] < aug.resize, resize, lambda: image)
    return image


def augment_batch(batch, seed, aug: Augment, size: int):
    """float32 pixel values (0-255) NHWC -> augmented, same shape; `seed` is int32 [2]."""
    import tensorflow as tf

    if aug.per_image:
        n = tf.shape(batch)[0]
        seeds = tf.random.experimental.stateless_split(seed, num=n)
        batch = tf.map_fn(
            lambda a: _one_image(a[0], a[1], aug, size),
            (batch, seeds),
            fn_output_signature=tf.float32,
        )
    if aug.flip:
        batch = tf.image.stateless_random_flip_left_right(batch, seed + 3)
    if aug.rotation or aug.shear:
        batch = _affine(batch, seed + 4, aug, size)
    return batch


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    spec: ModelSpec,
    batch_size: int,
    weights: np.ndarray | None = None,
    shuffle_seed: int | None = None,
    epoch: int = 0,
    augment: Augment = NO_AUGMENT,
):
    """A tf.data.Dataset of (inputs, labels[, sample weights]) batches.

    With `shuffle_seed`, the order of epoch `epoch` is fixed by (seed, epoch), and so are the
    augmentations of each batch: a resumed run sees exactly the batches the interrupted one
    would have seen."""
    import tensorflow as tf

    n = len(images)
    if n == 0:
        raise DataError("no images to feed the model")
    size, channels = images.shape[1], images.shape[3]
    order = np.arange(n)
    if shuffle_seed is not None:
        order = tf.argsort(tf.random.stateless_uniform([n], [shuffle_seed, epoch])).numpy()
    steps = math.ceil(n / batch_size)
    labels_t = tf.constant(np.asarray(labels, np.float32).reshape(-1, 1))
    weights_t = None if weights is None else tf.constant(np.asarray(weights, np.float32))

    def gather(idx):
        # One memcpy per batch from the (memory-mapped) cache: no per-image Python.
        return np.ascontiguousarray(images[np.asarray(idx)])

    def load(b, idx):
        x = tf.numpy_function(gather, [idx], tf.uint8, stateful=False)
        x = tf.reshape(x, [-1, size, size, channels])
        x = tf.cast(x, tf.float32)
        seed = tf.stack([tf.constant(shuffle_seed or 0, tf.int64), epoch * steps + b])
        if augment.active:
            x = augment_batch(x, tf.cast(seed, tf.int32), augment, size)
        # Exactly to_input's arithmetic: float32 pixels * float32(scale) + float32(offset).
        x = x * np.float32(spec.scale) + np.float32(spec.offset)
        y = tf.gather(labels_t, idx)
        if weights_t is None:
            return x, y
        return x, y, tf.gather(weights_t, idx)

    ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


@dataclass
class Split:
    """Aligned, labelled images of one split over one or more prepared folders."""

    images: np.ndarray  # uint8 (N, size, size, C)
    labels: np.ndarray  # float32, 1 = fake (the positive class)
    rows: list[dict[str, str]]  # manifest rows, each with "root" (its prepared folder) added

    def counts(self) -> dict[str, int]:
        fake = int(self.labels.sum())
        return {"fake": fake, "real": len(self.labels) - fake}


def load_split(
    prepared: list[Prepared],
    split: str,
    size: int,
    color: str,
    workers: int | None = None,
    cache_dir: Path | None = None,
    quiet: bool = False,
    fraction: float = 1.0,
) -> Split:
    """One split of several prepared folders; "all" takes every split.

    `fraction` < 1 keeps that share of each folder, chosen by a hash of each photo's path: the
    same photos every run, and a smaller share is a subset of a larger one (a learning curve)."""
    from .datasets import stable_fraction, usable

    parts, labels, rows = [], [], []
    for p in prepared:
        chosen = usable(p.rows, split)
        if fraction < 1.0:
            # Salted so the subset is independent of the hash that carved "valid" out of "train".
            chosen = [r for r in chosen if stable_fraction("subset:" + r["source"]) < fraction]
        if not chosen:
            continue
        parts.append(cached_pixels(p, chosen, size, color, workers, cache_dir, quiet))
        labels += [1.0 if r["label"] == "fake" else 0.0 for r in chosen]
        rows += [{**r, "root": str(p.root)} for r in chosen]
    if not parts:
        names = ", ".join(str(p.root) for p in prepared)
        raise DataError(f"{names}: no aligned, labelled images in split {split!r}.")
    # One folder stays memory-mapped; several are joined in memory.
    images = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return Split(images, np.asarray(labels, np.float32), rows)


def class_weights(labels: np.ndarray) -> dict[str, float]:
    """n / (2 n_c): each class carries half of the loss, whatever its share of images."""
    n, fake = len(labels), float(labels.sum())
    if fake == 0 or fake == n:
        raise DataError("the training split holds only one class; a detector needs both.")
    return {"fake": n / (2 * fake), "real": n / (2 * (n - fake))}


BALANCE_MODES = ("weights", "source", "sqrt", "none")
BALANCE_RULES = {
    "weights": "class: each class carries half of the loss (weight n / (2 n_class))",
    "source": "source x class: every (source, class) cell present carries the same share of "
    "the loss (weight n / (cells x n_cell)), so within a source its reals and fakes weigh the "
    "same and a one-class source (FairFace: reals only) weighs as much as any one cell",
    "sqrt": "source x class by size: every (source, class) cell carries a share of the loss "
    "proportional to the square root of its images (weight proportional to 1 / sqrt(n_cell)), so "
    "a large collection (140k) weighs more than a small one, but far less than in proportion",
    "none": "none: every image weighs 1",
}


def _cell_keys(rows: list[dict[str, str]], labels: np.ndarray) -> list[tuple[str, str]]:
    return [
        (source_of(r), "fake" if y == 1.0 else "real") for r, y in zip(rows, labels, strict=True)
    ]


def cell_weights(rows: list[dict[str, str]], labels: np.ndarray, power: float = 0.0) -> np.ndarray:
    """Per-image weights over the (source, class) cells present: each cell's share of the loss
    is proportional to n_cell ** power (0: every cell the same, n / (K n_cell) an image).

    They average 1, so the loss keeps its scale."""
    keys = _cell_keys(rows, labels)
    counts: dict[tuple[str, str], int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    shares = {k: c**power for k, c in counts.items()}
    total = sum(shares.values())
    n = len(keys)
    return np.array([n * shares[k] / (total * counts[k]) for k in keys], np.float32)


def describe_cells(rows: list[dict[str, str]], labels: np.ndarray, weights: np.ndarray) -> list:
    """Each (source, class) cell: images, weight per image, and its share of the whole loss."""
    keys = _cell_keys(rows, labels)
    total = float(np.sum(weights))
    cells = []
    for key in sorted(set(keys)):
        mask = np.array([k == key for k in keys])
        w = weights[mask]
        cells.append(
            {
                "source": key[0],
                "class": key[1],
                "n": int(mask.sum()),
                "weight": round(float(w.mean()), 6),
                "share": round(float(w.sum()) / total, 6),
            }
        )
    return cells


def sample_weights(train: Split, val: Split, mode: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train weights, validation weights, what was done) for `--balance MODE`.

    `weights` (class) and `none` weigh validation with the training split's class weights, as
    runs before per-source balance did; `source` and `sqrt` apply their rule to each split's own
    cells, so the best checkpoint has the lowest validation loss weighed the same way."""
    if mode not in BALANCE_MODES:
        raise DataError(f"--balance {mode!r}: choose from {', '.join(BALANCE_MODES)}.")
    info: dict = {"mode": mode, "rule": BALANCE_RULES[mode]}
    if mode in ("source", "sqrt"):
        class_weights(train.labels)  # refuses a one-class training set, as the class rule does
        power = 0.5 if mode == "sqrt" else 0.0
        train_w = cell_weights(train.rows, train.labels, power)
        val_w = cell_weights(val.rows, val.labels, power)
        # One mean weight per class, comparable with the class rule's two numbers.
        info["class_weights"] = {
            c: float(train_w[(train.labels == 1.0) == (c == "fake")].mean())
            for c in ("fake", "real")
        }
    else:
        cw = class_weights(train.labels) if mode == "weights" else {"fake": 1.0, "real": 1.0}
        train_w = np.where(train.labels == 1.0, cw["fake"], cw["real"]).astype(np.float32)
        val_w = np.where(val.labels == 1.0, cw["fake"], cw["real"]).astype(np.float32)
        info["class_weights"] = cw
    total = float(train_w.sum())
    info["class_share"] = {
        c: round(float(train_w[(train.labels == 1.0) == (c == "fake")].sum()) / total, 6)
        for c in ("fake", "real")
    }
    info["cells"] = describe_cells(train.rows, train.labels, train_w)
    info["valid_cells"] = describe_cells(val.rows, val.labels, val_w)
    info["sources"] = sorted({source_of(r) for r in train.rows})
    return train_w, val_w, info

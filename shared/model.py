"""The exported model: `model.json` (what the model expects and means) beside `model.tflite`.

Loaded once per process and run with LiteRT, never TensorFlow.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import clip, telemetry
from .errors import ExplainUnavailable, ModelUnavailable

FORMAT = 1
SPEC_FILE = "model.json"


@dataclass(frozen=True)
class ModelSpec:
    """Everything serving needs to feed the model and read its answer.

    `positive_class` names what the sigmoid output means: "fake" (output is P(fake)) or
    "real" (the Kaggle labels and Keras' alphabetical classes give P(real); P(fake) = 1 - it).
    `temperature` T, fitted on validation data at export, calibrates it: P(fake) is
    sigmoid(logit(raw P(fake)) / T); 1.0 (no change) for a model.json that does not name one.
    `threshold` applies to the calibrated P(fake).
    """

    name: str
    version: str
    size: int = 128
    color: str = "gray"  # "gray" or "rgb"
    scale: float = 1 / 255
    offset: float = 0.0
    align_size: int = 256
    positive_class: str = "fake"
    threshold: float = 0.5
    temperature: float = 1.0
    file: str = "model.tflite"
    trained_on: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def to_json(self) -> dict:
        body = asdict(self)
        return {
            "format": FORMAT,
            "name": body.pop("name"),
            "version": body.pop("version"),
            "file": body.pop("file"),
            "input": {k: body.pop(k) for k in ("size", "color", "scale", "offset")},
            "align_size": body.pop("align_size"),
            "output": {
                "activation": "sigmoid",
                "positive_class": body.pop("positive_class"),
                "temperature": body.pop("temperature"),
            },
            "threshold": body.pop("threshold"),
            "trained_on": body.pop("trained_on"),
            **body.pop("extra"),
        }

    @classmethod
    def from_json(cls, doc: dict) -> ModelSpec:
        if doc.get("format") != FORMAT:
            raise ValueError(f"model.json format {doc.get('format')!r} is not {FORMAT}")
        known = {"format", "name", "version", "file", "input", "align_size", "output"}
        known |= {"threshold", "trained_on"}
        spec = cls(
            name=doc["name"],
            version=str(doc["version"]),
            file=doc.get("file", "model.tflite"),
            align_size=int(doc.get("align_size", 256)),
            positive_class=doc["output"]["positive_class"],
            temperature=float(doc["output"].get("temperature", 1.0)),
            threshold=float(doc.get("threshold", 0.5)),
            trained_on=doc.get("trained_on", ""),
            extra={k: v for k, v in doc.items() if k not in known},
            **{k: doc["input"][k] for k in ("size", "color", "scale", "offset")},
        )
        if spec.color not in ("gray", "rgb") or spec.positive_class not in ("fake", "real"):
            raise ValueError("model.json: input.color must be gray|rgb, positive_class fake|real")
        if not (np.isfinite(spec.temperature) and spec.temperature > 0):
            raise ValueError(f"model.json: output.temperature {spec.temperature} is not > 0")
        return spec

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / SPEC_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def calibrate(p: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T), float32. T = 1 returns `p` itself (bit for bit): a model exported
    before calibration existed serves exactly what it did."""
    p = np.asarray(p, dtype=np.float32)
    if temperature == 1.0:
        return p
    return clip.sigmoid(clip.logit(p) / temperature)


def to_input(aligned: Image.Image, spec: ModelSpec) -> np.ndarray:
    """Aligned RGB face -> the float32 HxWxC array the model takes. Training uses this too."""
    img = aligned.convert("RGB")
    if img.size != (spec.size, spec.size):
        img = img.resize((spec.size, spec.size), Image.Resampling.BILINEAR, reducing_gap=None)
    if spec.color == "gray":
        img = img.convert("L")
    arr = np.asarray(img, dtype=np.float32).reshape(spec.size, spec.size, spec.channels)
    return arr * np.float32(spec.scale) + np.float32(spec.offset)


@dataclass(frozen=True)
class Scores:
    """A batch of faces as the model judged them: `p_fake` is the answer (both views combined
    when the model has two), `views` each view's own P(fake) (None for a one-view model), and
    `inputs` what the CNN saw (crops and Grad-CAM draw on it)."""

    inputs: np.ndarray
    p_fake: np.ndarray
    views: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class ClipView:
    """The second view (shared.clip) and how its answer joins the CNN's, from model.json."""

    encoder: clip.Encoder
    head: clip.LinearHead | clip.MlpHead
    fusion: clip.Fusion
    engines: tuple[clip.Engine, ...] = ()

    @classmethod
    def load(cls, model_dir: Path, doc: dict, threads: int | None) -> ClipView:
        enc = doc["clip"]["encoder"]
        encoder = clip.Encoder(model_dir / enc["file"], enc["sha256"], threads)
        head = clip.load_head(model_dir, doc["clip"]["head"])
        if head.feature not in encoder.names:
            raise ModelUnavailable(
                f"The CLIP head reads the {head.feature!r} feature, which the encoder "
                f"{enc['file']} does not output."
            )
        return cls(
            encoder,
            head,
            clip.Fusion.from_json(doc["fusion"]),
            tuple(clip.Engine.from_json(e) for e in doc["clip"].get("adapted", [])),
        )


class Model:
    """A LiteRT interpreter plus its spec, and the CLIP view when model.json names one. One
    interpreter is not thread-safe: calls are locked."""

    def __init__(self, model_dir: str | Path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.dir = Path(model_dir)
        spec_path = self.dir / SPEC_FILE
        if not spec_path.is_file():
            raise ModelUnavailable(
                f"No model in {self.dir}: {SPEC_FILE} is missing. Run `make model` to train one, "
                "or set FAKEFACES_MODEL_DIR to a folder written by `python -m training export`."
            )
        try:
            self.spec = ModelSpec.from_json(json.loads(spec_path.read_text()))
            # LiteRT uses one thread unless told; every core halves the model's time here.
            self._interp = Interpreter(
                model_path=str(self.dir / self.spec.file),
                num_threads=num_threads or os.cpu_count() or 1,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailable(f"The model in {self.dir} cannot be loaded: {exc}") from exc
        signatures = self._interp.get_signature_list()
        serve = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        self._serve = self._interp.get_signature_runner(serve)
        self._serve_in = next(iter(self._serve.get_input_details()))
        explain = self.spec.extra.get("explain") or {}
        self._explain = None
        if explain.get("signature") in signatures:
            self._explain = self._interp.get_signature_runner(explain["signature"])
            self._explain_in = next(iter(self._explain.get_input_details()))
        self._lock = threading.Lock()
        views = self.spec.extra.get("views")
        try:
            self.clip = ClipView.load(self.dir, views, num_threads) if views else None
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"model.json's views in {self.dir} are not valid: {exc}"
            raise ModelUnavailable(msg) from exc

    @property
    def can_explain(self) -> bool:
        """Whether the model was exported with a Grad-CAM signature."""
        return self._explain is not None

    def require_explain(self) -> None:
        if self._explain is None:
            raise ExplainUnavailable(
                f"The model {self.spec.name} {self.spec.version} was exported without Grad-CAM; "
                "re-export it with `python -m training export` to get heat maps."
            )

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """A batch of `to_input` arrays (N,H,W,C) -> P(fake) for each, shape (N,)."""
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            out = self._serve(**{self._serve_in: inputs})
        out = next(iter(out.values())).reshape(len(inputs), -1)[:, 0].copy()
        out = out if self.spec.positive_class == "fake" else 1.0 - out
        return calibrate(out, self.spec.temperature)

    def score(self, faces: list[Image.Image]) -> Scores:
        """Aligned faces (as `shared.faces` aligns them) -> each face's P(fake), by every view.
        Serving and evaluation both call this, so a two-view answer is computed one way."""
        inputs = np.stack([to_input(f, self.spec) for f in faces])
        with telemetry.span("view.cnn", faces=len(faces)):
            p_cnn = self.predict(inputs)
        if self.clip is None:
            return Scores(inputs, p_cnn)
        rgb = np.stack([np.asarray(f.convert("RGB"), np.uint8) for f in faces])
        with telemetry.span("view.clip", faces=len(faces)):
            features = self.clip.encoder.features(rgb)
        return self.score_views(inputs, p_cnn, features)

    def score_views(
        self, inputs: np.ndarray, p_cnn: np.ndarray, features: dict[str, np.ndarray]
    ) -> Scores:
        """The combined answer from the CNN's P(fake) and the CLIP features (`training fuse`
        and `adapt` score cached features through this, so their tables are what serving
        answers). Engines taught by `adapt` raise the CLIP view's answer and the combined one
        where they fire (shared.clip.Engine)."""
        if self.clip is None:
            raise ValueError(f"{self.spec.name} has one view: there is no CLIP head to score")
        clip_logit = self.clip.head.logit(features)
        fused = self.clip.fusion.logit(clip.logit(p_cnn), clip_logit)
        taught = clip.engines_logit(self.clip.engines, features)
        if taught is not None:
            fused, clip_logit = np.maximum(fused, taught), np.maximum(clip_logit, taught)
        views = {"cnn": p_cnn, "clip": clip.sigmoid(clip_logit)}
        return Scores(inputs, clip.sigmoid(fused), views)

    def explain(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """One `to_input` array (H,W,C) -> P(fake), the last conv block's activations (h, w, k)
        and Grad-CAM's channel weights (k,): what `shared.explain.grad_cam` needs."""
        self.require_explain()
        batch = np.ascontiguousarray(x[None], dtype=np.float32)
        with self._lock:
            out = self._explain(**{self._explain_in: batch})
        p = float(out["p_fake"].reshape(-1)[0])
        p = p if self.spec.positive_class == "fake" else 1.0 - p
        p = float(calibrate(np.array([p], np.float32), self.spec.temperature)[0])
        return p, out["features"][0].copy(), out["weights"][0].copy()

    def label(self, p_fake: float) -> str:
        return "fake" if p_fake >= self.spec.threshold else "real"

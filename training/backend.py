"""Which Keras backend a run trains on, on which device, and in which precision.

Keras 3 picks its backend per process from KERAS_BACKEND (tensorflow, jax or torch). Nothing
here imports a framework other than the one Keras runs on: a JAX or PyTorch run must work where
TensorFlow is not installed (PyTorch's CUDA build on Windows, where TensorFlow has had no GPU
support since 2.10).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

from .errors import CommandError

PRECISIONS = ("auto", "on", "off", "float16", "bfloat16")


class BackendError(CommandError, ValueError):
    """A Keras backend or precision `train` cannot run on; the message names the setting."""


@dataclass
class Device:
    """The device Keras computes on: a GPU (the first of `count`) or the CPU."""

    backend: str
    kind: str  # "gpu", "mps" or "cpu"
    name: str
    count: int = 0  # GPUs the backend sees
    compute_capability: tuple[int, int] | None = None  # NVIDIA's (major, minor)

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"the CPU ({os.cpu_count()} cores)"
        cc = f", compute capability {self.compute_capability[0]}.{self.compute_capability[1]}"
        extra = cc if self.compute_capability else ""
        more = f" (1 of {self.count})" if self.count > 1 else ""
        return f"{self.name}{more}{extra}"

    def to_json(self) -> dict:
        return asdict(self)


def backend() -> str:
    import keras

    return keras.backend.backend()


def _capability(text) -> tuple[int, int] | None:
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _tensorflow() -> Device:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return Device("tensorflow", "cpu", "CPU")
    details = tf.config.experimental.get_device_details(gpus[0])
    cc = details.get("compute_capability")
    return Device("tensorflow", "gpu", details.get("device_name", gpus[0].name), len(gpus), cc)


def _torch() -> Device:
    import torch

    # Keras' torch backend puts everything on CUDA when it is there, else on Apple's MPS.
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        cc = tuple(torch.cuda.get_device_capability(0))
        return Device("torch", "gpu", torch.cuda.get_device_name(0), count, cc)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return Device("torch", "mps", "Apple MPS", 1)
    return Device("torch", "cpu", "CPU")


def _jax() -> Device:
    import jax

    devices = jax.devices()
    first = devices[0]
    if first.platform == "cpu":
        return Device("jax", "cpu", "CPU")
    cc = _capability(getattr(first, "compute_capability", ""))
    return Device("jax", "gpu", first.device_kind, len(devices), cc)


def detect() -> Device:
    """The device the current Keras backend trains on."""
    name = backend()
    probe = {"tensorflow": _tensorflow, "torch": _torch, "jax": _jax}.get(name)
    if probe is None:
        raise BackendError(f"KERAS_BACKEND={name}: train runs on tensorflow, jax or torch")
    return probe()


def nvidia_gpus() -> list[str]:
    """NVIDIA GPUs the driver lists, whatever any framework sees: `nvidia-smi -L` lines."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.stdout.splitlines() if line.startswith("GPU ")]


def unused_gpu_warning(device: Device, listed: list[str] | None = None) -> str | None:
    """One sentence when the machine has an NVIDIA GPU that this run does not use."""
    if device.kind != "cpu":
        return None
    listed = nvidia_gpus() if listed is None else listed
    if not listed:
        return None
    gpu = listed[0].split(":", 1)[1].split("(UUID")[0].strip()
    return (
        f"warning: this machine has a GPU ({gpu}) but Keras' {device.backend} backend does not "
        "see it, so this run trains on the CPU, many times slower: install your platform's "
        "GPU requirements (README: Training on a GPU)."
    )


def policy(mode: str, device: Device) -> str:
    """The Keras dtype policy for --mixed-precision `mode` on `device`.

    auto: bfloat16 where the GPU computes it natively (NVIDIA compute capability 8.0+: no loss
    scaling, float32's range), float16 with loss scaling on older tensor-core GPUs (7.x),
    float32 elsewhere (a CPU gains nothing from halves). on: mixed, bfloat16 where native, else
    float16. Either way the model's P(fake) unit, the loss and the metrics stay float32."""
    if mode not in PRECISIONS:
        raise BackendError(f"--mixed-precision {mode!r}: choose from {', '.join(PRECISIONS)}")
    if mode == "off":
        return "float32"
    if mode in ("float16", "bfloat16"):
        return f"mixed_{mode}"
    cc = device.compute_capability
    if device.kind == "gpu":
        if cc is None or cc >= (8, 0):  # no capability: a non-NVIDIA GPU; bfloat16 is the safe half
            return "mixed_bfloat16"
        if cc >= (7, 0):
            return "mixed_float16"
        return "mixed_float16" if mode == "on" else "float32"
    return "mixed_float16" if mode == "on" else "float32"

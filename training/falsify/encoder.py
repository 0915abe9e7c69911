"""The encoder interface `falsify` drives: an FFHQ-aligned RGB face in, a generated face out.

Only the interface: `loader` picks an implementation (pSp in `psp`, or a plug-in class), so
the implementations import this module and it imports none of them.
"""

from __future__ import annotations

import abc

import numpy as np

from ..errors import CommandError


class EncoderError(CommandError, RuntimeError):
    """An encoder that cannot be set up; the message says what to install or pass."""


class Encoder(abc.ABC):
    """Turns a real aligned face into a generated one that keeps the person's look.

    `encode` takes an (input_size, input_size, 3) uint8 RGB array aligned with the FFHQ recipe
    (`shared.align`) and returns an (H, W, 3) uint8 RGB array. `encode_batch` may be overridden
    to use a GPU batch; by default it encodes one face at a time.
    """

    name: str = "encoder"
    input_size: int = 256

    @abc.abstractmethod
    def encode(self, face: np.ndarray) -> np.ndarray: ...

    def encode_batch(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        return [self.encode(f) for f in faces]

    def describe(self) -> dict:
        """What produced the fakes, recorded in the run's manifest."""
        return {"name": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}"}


def check_output(out: object) -> np.ndarray:
    """An encoder's answer as an (H, W, 3) uint8 array, or ValueError saying what is wrong."""
    arr = np.asarray(out)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 16:
        raise ValueError(f"encoder returned shape {arr.shape}, not (H, W, 3) with H, W >= 16")
    if arr.dtype != np.uint8:
        raise ValueError(f"encoder returned dtype {arr.dtype}, not uint8")
    return arr

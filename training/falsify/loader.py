"""`--encoder`'s value to an Encoder: `psp` (the adapter in `psp`) or a plug-in class."""

from __future__ import annotations

import importlib

from .encoder import Encoder, EncoderError
from .psp import PSPEncoder


def load_encoder(spec: str, **kwargs) -> Encoder:
    """`psp` (kwargs: repo, checkpoint, device, ...) or `package.module:Class` (no arguments)."""
    if spec == "psp":
        return PSPEncoder(**kwargs)
    module_name, sep, cls_name = spec.partition(":")
    if not sep or not module_name or not cls_name:
        raise EncoderError(f"--encoder {spec!r}: use `psp` or `package.module:ClassName`.")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise EncoderError(f"--encoder {spec!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Encoder)):
        raise EncoderError(f"--encoder {spec!r} is not a training.falsify.encoder.Encoder class.")
    try:
        return cls()
    except Exception as exc:
        raise EncoderError(f"--encoder {spec!r} could not be created: {exc}") from exc

"""A PyTorch state dict (`.pth`) read into numpy arrays without installing PyTorch.

`torch.save` writes pickles whose tensors point at raw storages: since PyTorch 1.6 a zip
(`<name>/data.pkl` + one `<name>/data/<key>` file per storage), before that one stream of
pickles (magic number, protocol, system info, the object, the storage keys, then each storage as
an int64 element count followed by its bytes). Both are read here by a restricted unpickler
that builds only ordered dicts and tensors, so a checkpoint cannot run code while loading.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import ModelError

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    def __init__(self, name: str):
        if name not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type torch.{name}")
        self.dtype = np.dtype(_DTYPES[name]).newbyteorder("<")


class _Storage(NamedTuple):
    key: str
    dtype: np.dtype
    numel: int


class _Tensor(NamedTuple):
    """A tensor as the pickle describes it; its bytes may come later in the file."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self, storages: dict[str, np.ndarray]) -> np.ndarray:
        flat = storages[self.storage.key]
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * flat.itemsize for s in self.stride),
        )
        return np.array(view, dtype=flat.dtype.newbyteorder("="))  # contiguous, own memory


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, meta=None):
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        # ("storage", storage type, key, device, element count[, view metadata])
        if pid[0] != "storage" or (len(pid) > 5 and pid[5] is not None):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid[:2]}")
        return _Storage(str(pid[2]), pid[1].dtype, int(pid[4]))


def _tensors(state: dict) -> dict[str, _Tensor]:
    if not isinstance(state, dict) or not all(isinstance(v, _Tensor) for v in state.values()):
        raise ModelError("not a state dict of tensors")
    return dict(state)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
        root = pkl[: -len("data.pkl")]
        tensors = _tensors(_Unpickler(io.BytesIO(zf.read(pkl))).load())
        storages = {
            s.key: np.frombuffer(zf.read(f"{root}data/{s.key}"), s.dtype, count=s.numel)
            for s in {t.storage for t in tensors.values()}
        }
    return {name: t.array(storages) for name, t in tensors.items()}


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    fh = io.BytesIO(path.read_bytes())
    try:
        magic = pickle.load(fh)
    except pickle.UnpicklingError:
        magic = None
    if magic != _LEGACY_MAGIC:
        raise ModelError(f"{path}: not a PyTorch checkpoint")
    pickle.load(fh)  # protocol version
    pickle.load(fh)  # system info (endianness, type sizes)
    tensors = _tensors(_Unpickler(fh).load())
    by_key = {t.storage.key: t.storage for t in tensors.values()}
    storages = {}
    for key in pickle.load(fh):
        s = by_key[key]
        (numel,) = struct.unpack("<q", fh.read(8))
        if numel != s.numel:
            raise ModelError(f"{path}: storage {key} holds {numel} elements, not {s.numel}")
        storages[key] = np.frombuffer(fh.read(numel * s.dtype.itemsize), s.dtype)
    return {name: t.array(storages) for name, t in tensors.items()}


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """name -> array for every tensor in a `torch.save`d state dict, in the file's order."""
    path = Path(path)
    return _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)

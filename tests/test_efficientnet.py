"""EfficientNet-Lite0: the PyTorch checkpoint read without torch, the Keras port proven against
ImageNet photos and an independent numpy forward pass, and its export with Grad-CAM."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def photo(name: str, size: int) -> np.ndarray:
    """A scikit-image photo, centre-cropped to a square and resized, as 0-255 float RGB."""
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, np.float32)


@pytest.fixture(scope="module")
def state():
    from training.models.efficientnet_lite import weights_path
    from training.models.torch_state import load_state_dict

    return load_state_dict(weights_path())


def test_the_wheels_checkpoint_reads_without_torch(state):
    import importlib.util

    assert importlib.util.find_spec("torch") is None  # serving and training stay torch-free
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert params == 4_694_024  # EfficientNet-Lite0 with its ImageNet classifier
    assert all(v.dtype == np.float32 for k, v in state.items() if "num_batches" not in k)


def _zip_checkpoint(tensors: dict[str, np.ndarray]) -> bytes:
    """What torch.save writes since PyTorch 1.6, built opcode by opcode: archive/data.pkl, an
    OrderedDict of torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, hooks)
    calls on persistent ("storage", torch.FloatStorage, key, "cpu", numel) ids, plus one raw
    archive/data/<key> per storage."""

    def text(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    def ints(values) -> bytes:
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    ordered_dict = b"ccollections\nOrderedDict\n)R"
    pkl = b"\x80\x02" + ordered_dict
    for key, (name, arr) in enumerate(tensors.items()):
        storage = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text(str(key))
        storage += text("cpu") + ints([arr.size])[1:-1] + b"tQ"  # BINPERSID
        strides = [s // arr.itemsize for s in arr.strides]
        pkl += text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
        pkl += storage + ints([0])[1:-1] + ints(arr.shape) + ints(strides) + b"\x89"
        pkl += ordered_dict + b"tRs"  # args tuple, call, state_dict[name] = tensor
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("archive/data.pkl", pkl + b".")
        for key, arr in enumerate(tensors.values()):
            zf.writestr(f"archive/data/{key}", np.ascontiguousarray(arr, "<f4").tobytes())
    return out.getvalue()


def test_zip_checkpoints_read_too_and_code_is_refused(tmp_path):
    from training.models.torch_state import load_state_dict

    want = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float32)}
    (tmp_path / "new.pth").write_bytes(_zip_checkpoint(want))
    got = load_state_dict(tmp_path / "new.pth")
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])

    # A legacy-format stream whose object calls os.system must not run it.
    evil = io.BytesIO()
    for part in (0x1950A86A20F9469CFC6C, 1001, {}):
        pickle.dump(part, evil, protocol=2)
    evil.write(b"cos\nsystem\n(S'echo pwned'\ntR.")
    (tmp_path / "evil.pth").write_bytes(evil.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing to load os.system"):
        load_state_dict(tmp_path / "evil.pth")


@pytest.fixture(scope="module")
def imagenet():
    from training.models.efficientnet_lite import efficientnet_lite0

    return efficientnet_lite0((224, 224, 3), classes=1000)


@pytest.mark.parametrize(
    "name, classes",
    [
        ("chelsea", range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
        ("coffee", (967, 968)),  # espresso, cup
    ],
)
def test_the_port_classifies_imagenet_photos(imagenet, name, classes):
    """With its own ImageNet classifier the ported network names real photos' classes, as a
    wrong kernel layout, padding, normalisation or batch-norm epsilon would not."""
    from training.models.efficientnet_lite import OFFSET, SCALE

    logits = imagenet.predict(photo(name, 224)[None] * SCALE + OFFSET, verbose=0)[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert int(np.argmax(p)) in classes
    assert sum(p[c] for c in classes) > 0.8


def _reference_conv(x, w, stride, depthwise=False):
    """Convolution as PyTorch computes it on OIHW weights, padded like TensorFlow's SAME (extra
    row/column after), which the checkpoint's PyTorch port (Conv2dStaticSamePadding) does."""
    k = w.shape[-1]
    h = x.shape[0]
    out = -(-h // stride)
    pad = max((out - 1) * stride + k - h, 0)
    x = np.pad(x, ((pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)))
    patches = np.stack(
        [
            x[i : i + stride * out : stride, j : j + stride * out : stride]
            for i in range(k)
            for j in range(k)
        ],
        axis=-1,
    ).reshape(out, out, x.shape[-1], k, k)  # (h, w, C, kh, kw)
    if depthwise:
        return np.einsum("hwcij,cij->hwc", patches, w[:, 0])
    return np.einsum("hwcij,ocij->hwo", patches, w)


def _reference_bn(x, state, name, relu6=True):
    g, b = state[f"{name}.weight"], state[f"{name}.bias"]
    m, v = state[f"{name}.running_mean"], state[f"{name}.running_var"]
    y = (x - m) / np.sqrt(v + 1e-3) * g + b  # upstream's epsilon
    return np.clip(y, 0, 6) if relu6 else y


def test_the_port_equals_a_numpy_forward_pass_of_the_first_blocks(state):
    """Stem, block 0 (depthwise, residual-free) and block 1 (expand, stride-2 depthwise,
    project), written from the state dict alone, agree with the Keras layers."""
    import keras

    from training.models.efficientnet_lite import OFFSET, SCALE, efficientnet_lite0

    model = efficientnet_lite0((64, 64, 3))
    rgb = photo("chelsea", 64)
    trunk = keras.Model(model.input, model.get_layer("block1_project_bn").output)
    got = trunk(rgb[None] * SCALE + OFFSET)[0]  # what shared.model.to_input feeds it

    x = (rgb - 127) / 128  # the normalisation EfficientNet-Lite was trained with
    y = _reference_bn(_reference_conv(x, state["_conv_stem.weight"], 2), state, "_bn0")
    b = "_blocks.0."
    y = _reference_bn(
        _reference_conv(y, state[b + "_depthwise_conv.weight"], 1, True), state, b + "_bn1"
    )
    y = _reference_bn(
        np.einsum("hwc,oc->hwo", y, state[b + "_project_conv.weight"][:, :, 0, 0]),
        state,
        b + "_bn2",
        relu6=False,
    )
    b = "_blocks.1."
    y = _reference_bn(
        np.einsum("hwc,oc->hwo", y, state[b + "_expand_conv.weight"][:, :, 0, 0]), state, b + "_bn0"
    )
    y = _reference_bn(
        _reference_conv(y, state[b + "_depthwise_conv.weight"], 2, True), state, b + "_bn1"
    )
    want = _reference_bn(
        np.einsum("hwc,oc->hwo", y, state[b + "_project_conv.weight"][:, :, 0, 0]),
        state,
        b + "_bn2",
        relu6=False,
    )
    assert got.shape == want.shape == (16, 16, 24)
    scale = np.abs(want).max()
    assert np.abs(np.asarray(got) - want).max() < 1e-4 * scale

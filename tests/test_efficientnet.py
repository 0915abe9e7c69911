"""EfficientNet-Lite0: the PyTorch checkpoint read without torch, the Keras port proven against
ImageNet photos and an independent numpy forward pass, and its export with Grad-CAM."""

from __future__ import annotations

import io
import json
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


def test_cli_defaults_pretrained_fine_tuning_and_from_scratch():
    import argparse

    from training.models.efficientnet_lite import OFFSET, SCALE
    from training.train import NORMS, _config, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--data", "d", "--out", "o", "--model", "efficientnet_lite0"]
    cfg = _config(parser.parse_args(base))
    assert (cfg["scale"], cfg["offset"]) == NORMS["lite"] == (SCALE, OFFSET)
    assert cfg["weights"] == "imagenet" and cfg["batch_norm"] == "frozen"
    assert cfg["freeze_epochs"] == 2 and cfg["fine_tune_learning_rate"] == 1e-4
    scratch = _config(parser.parse_args([*base, "--weights", "none"]))
    assert scratch["weights"] is None and scratch["freeze_epochs"] == 0
    assert scratch["batch_norm"] == "train" and scratch["fine_tune_learning_rate"] is None
    vgg = _config(parser.parse_args([*base[:-1], "vgg10"]))
    assert vgg["weights"] is None and vgg["norm"] == "unit" and vgg["freeze_epochs"] == 0


RUN_SIZE = 96  # a 3×3 Grad-CAM grid; small enough to train in seconds


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared folder of textured RGB squares: 8 train and 4 valid images, half fake."""

    from tests.conftest import write_manifest

    root = tmp_path_factory.mktemp("prepared")
    rng = np.random.default_rng(5)
    rows = []
    for i in range(12):
        label = ("fake", "real")[i % 2]
        img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        img[:: 5 + i % 2] //= 2  # each class its own stripes
        (root / label).mkdir(exist_ok=True)
        Image.fromarray(img).save(root / f"{label}/{i}.png")
        split = "valid" if i >= 8 else "train"
        rows.append(
            dict(source=f"{label}/{i}.png", output=f"{label}/{i}.png", split=split, label=label)
            | dict(dataset="t", faces="1", status="ok")
        )
    write_manifest(root, rows)
    return root


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory):
    """One frozen epoch, interrupted; resumed for a second, unfrozen one."""
    import keras

    from training.__main__ import main

    out = tmp_path_factory.mktemp("run") / "r"
    args = ["train", "--data", str(prepared), "--model", "efficientnet_lite0", "--out", str(out)]
    args += ["--color", "rgb", "--size", str(RUN_SIZE), "--batch-size", "4", "--lr", "1e-2"]
    args += ["--freeze-epochs", "1", "--fine-tune-lr", "1e-2", "--no-augment", "--quiet"]
    assert main([*args, "--epochs", "1"]) == 0
    frozen = keras.models.load_model(out / "last.keras")
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    return out, frozen


def test_fine_tuning_freezes_then_trains_the_backbone_across_a_resume(run):
    import csv

    import keras

    from training.models.efficientnet_lite import efficientnet_lite0

    out, frozen = run
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["weights"] == "imagenet" and cfg["norm"] == "lite"
    assert cfg["freeze_epochs"] == 1 and cfg["batch_norm"] == "frozen"
    with (out / "history.csv").open() as fh:
        assert [r["lr"] for r in csv.DictReader(fh)] == ["0.01", "0.01"]
    imagenet = efficientnet_lite0((RUN_SIZE, RUN_SIZE, 3))
    unfrozen = keras.models.load_model(out / "last.keras")

    def weights(model, layer):
        return [np.asarray(w) for w in model.get_layer(layer).get_weights()]

    def same(a, b, layer):
        pairs = zip(weights(a, layer), weights(b, layer), strict=True)
        return all(np.array_equal(x, y) for x, y in pairs)

    # epoch 1: only the head moved; the backbone is ImageNet's, bit for bit
    assert not frozen.get_layer("stem_conv").trainable
    assert same(frozen, imagenet, "stem_conv") and same(frozen, imagenet, "top_conv")
    assert not same(frozen, unfrozen, "p_fake")
    # epoch 2 (after the resume): convolutions train, batch norm keeps ImageNet's statistics
    assert unfrozen.get_layer("stem_conv").trainable
    assert not same(unfrozen, imagenet, "stem_conv")
    assert not unfrozen.get_layer("top_bn").trainable
    assert same(unfrozen, imagenet, "top_bn") and same(unfrozen, imagenet, "block3_dw_bn")


def test_a_run_continues_from_another_at_a_larger_size(run, prepared, tmp_path):
    """--weights RUN/last.keras: every layer starts as that run left it, at another --size; a
    checkpoint that does not fit (gray input against an RGB run) is one sentence."""
    import keras

    from training.__main__ import main
    from training.models import build

    source = keras.models.load_model(run[0] / "last.keras")
    bigger = build("efficientnet_lite0", RUN_SIZE + 32, 3, 0.5, str(run[0] / "last.keras"))
    assert bigger.input_shape == (None, RUN_SIZE + 32, RUN_SIZE + 32, 3)
    for layer in ("stem_conv", "block3_dw_bn", "top_conv", "p_fake"):
        theirs, ours = source.get_layer(layer), bigger.get_layer(layer)
        pairs = zip(theirs.get_weights(), ours.get_weights(), strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)
    with pytest.raises(ValueError, match="stem_conv does not fit"):
        build("efficientnet_lite0", RUN_SIZE, 1, 0.5, str(run[0] / "last.keras"))
    with pytest.raises(ValueError, match="no such checkpoint"):
        build("efficientnet_lite0", RUN_SIZE, 3, 0.5, str(tmp_path / "gone" / "best.keras"))
    out = tmp_path / "r256"
    args = ["train", "--data", str(prepared), "--model", "efficientnet_lite0", "--out", str(out)]
    args += ["--color", "rgb", "--size", str(RUN_SIZE + 32), "--batch-size", "4", "--epochs", "1"]
    args += ["--weights", str(run[0] / "last.keras"), "--freeze-epochs", "0", "--lr", "1e-3"]
    assert main([*args, "--no-augment", "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["weights"].endswith("last.keras") and cfg["size"] == RUN_SIZE + 32
    trained = keras.models.load_model(out / "last.keras")
    moved = trained.get_layer("stem_conv").get_weights()[0]
    assert not np.array_equal(moved, source.get_layer("stem_conv").get_weights()[0])


def test_a_fine_tuned_run_exports_with_grad_cam(run, prepared, tmp_path):
    """`python -m training export` on the run: LiteRT equals Keras on the run's images (the
    exporter checks that, and Grad-CAM against TensorFlow's) and the explain signature reads
    the 1280-channel top of the network."""
    import keras

    from shared.explain import grad_cam
    from shared.model import Model, calibrate
    from training.__main__ import main
    from training.evaluation.gradcam import reference

    out, _ = run
    assert main(["export", str(out), "--out", str(tmp_path / "m"), "--checkpoint", "last"]) == 0
    served = Model(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "model.json").read_text())
    assert spec["explain"]["layer"] == "top_relu"
    assert spec["explain"]["grid"] == [RUN_SIZE // 32] * 2
    assert (served.spec.scale, served.spec.offset) == (1 / 128, -127 / 128)
    assert spec["training"]["weights"] == "imagenet" and spec["training"]["freeze_epochs"] == 1

    keras_model = keras.models.load_model(out / "last.keras")
    x = photo("astronaut", RUN_SIZE) * np.float32(1 / 128) - np.float32(127 / 128)
    p, features, channel_weights = served.explain(x)
    assert features.shape[-1] == 1280
    raw = keras_model.predict(x[None], verbose=0)[0]
    want_p = float(calibrate(raw, served.spec.temperature)[0])  # as serving shows it
    assert p == pytest.approx(want_p, abs=1e-5)
    assert served.predict(x[None])[0] == pytest.approx(want_p, abs=1e-5)
    for fake in (True, False):
        want = reference(keras_model, x[None], np.array([float(fake)]))[0]
        got = grad_cam(features, channel_weights, fake)
        np.testing.assert_allclose(got, want, atol=1e-4)

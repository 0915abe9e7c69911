"""Training on Keras' JAX backend as on TensorFlow: the same crops, the same CLI, a TensorFlow-free
input pipeline (bit-exact with serving's inputs), and exports that LiteRT agrees with.

Keras picks its backend once per process, so the JAX runs happen in a subprocess, one in which
TensorFlow cannot be imported: what a PyTorch or JAX user without TensorFlow has.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from shared.model import ModelSpec, to_input  # noqa: E402
from tests.conftest import write_manifest  # noqa: E402
from training import backend  # noqa: E402
from training.data.datasets import read_prepared  # noqa: E402
from training.data.pipeline import NO_AUGMENT, Augment, load_split, make_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # name: the CLI's arguments beyond --data and --out; small enough to train in seconds
    "vgg10": ["--model", "vgg10", "--size", "32", "--epochs", "1"],
    "efficientnet_lite0": ["--model", "efficientnet_lite0", "--size", "32", "--color", "rgb"]
    + ["--epochs", "2", "--freeze-epochs", "1"],
}
COMMON = ["--batch-size", "8", "--quiet"]

# Run in the subprocess: TensorFlow made unimportable, then the CLI, then the TensorFlow runs'
# checkpoints predicted on JAX, so the parent can compare the two backends' arithmetic.
NO_TENSORFLOW = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    class NoTensorFlow:  # as if TensorFlow were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tf_keras"):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, NoTensorFlow())
    from training.__main__ import main

    job = json.loads(sys.argv[1])
    for args in job["train"]:
        if main(args) != 0:
            sys.exit(f"train {args} failed")
    import keras

    assert keras.backend.backend() == "jax"
    out = {}
    for name, path in job["predict"].items():
        model = keras.models.load_model(path)
        x = np.load(job["inputs"])[name]
        out[name] = model.predict(x, verbose=0)
    np.savez(job["outputs"], **out)
    # export converts with TensorFlow: on JAX it must say so, not fail somewhere inside
    print("export exit", main(["export", job["train"][0][-1], "--out", job["outputs"] + "-m"]))
    print("tensorflow loaded:", [m for m in sys.modules if m.startswith("tensorflow")])
    """
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """One prepared folder of 16 train and 8 valid textured RGB crops, half fake: both
    backends train on exactly these."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(11)
    rows = []
    for i in range(24):
        label = ("fake", "real")[i % 2]
        img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        img[:: 5 + i % 2] //= 2  # each class its own stripes
        (root / label).mkdir(exist_ok=True)
        Image.fromarray(img).save(root / f"{label}/{i}.png")
        rows.append(
            dict(source=f"{label}/{i}.png", output=f"{label}/{i}.png", label=label)
            | dict(split="valid" if i >= 16 else "train", dataset="t", faces="1", status="ok")
        )
    write_manifest(root, rows)
    return root


def _arg(name: str, flag: str, default: str = "") -> str:
    args = RUNS[name]
    return args[args.index(flag) + 1] if flag in args else default


def _inputs(prepared: Path, name: str) -> np.ndarray:
    """The run's validation crops as serving feeds them (to_input, the run's normalisation)."""
    from training.train import DEFAULT_NORM, NORMS

    scale, offset = NORMS[DEFAULT_NORM.get(name, "unit")]
    size, color = int(_arg(name, "--size")), _arg(name, "--color", "gray")
    spec = ModelSpec(name="t", version="0", size=size, color=color, scale=scale, offset=offset)
    rows = [r for r in read_prepared(prepared).rows if r["split"] == "valid"]
    return np.stack([to_input(Image.open(prepared / r["output"]), spec) for r in rows])


@pytest.fixture(scope="module")
def runs(prepared, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Each model trained on TensorFlow (here) and on JAX (a subprocess without TensorFlow)."""
    from training.__main__ import main

    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, args in RUNS.items():
        out["tensorflow", name] = base / f"tensorflow-{name}"
        cli = ["train", "--data", str(prepared), *args, *COMMON]
        assert main([*cli, "--out", str(out["tensorflow", name])]) == 0
    inputs = base / "inputs.npz"
    np.savez(inputs, **{name: _inputs(prepared, name) for name in RUNS})
    job = {
        "train": [
            ["train", "--data", str(prepared), *args, *COMMON, "--out", str(base / f"jax-{n}")]
            for n, args in RUNS.items()
        ],
        "predict": {n: str(out["tensorflow", n] / "last.keras") for n in RUNS},
        "inputs": str(inputs),
        "outputs": str(base / "jax-predictions.npz"),
    }
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, json.dumps(job)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow loaded: []" in proc.stdout
    assert "export exit 2" in proc.stdout and "KERAS_BACKEND=tensorflow" in proc.stderr
    for name in RUNS:
        out["jax", name] = base / f"jax-{name}"
    out["inputs"], out["jax-predictions"] = inputs, base / "jax-predictions.npz"
    return out


@pytest.mark.parametrize("name", sorted(RUNS))
def test_jax_and_tensorflow_train_the_same_crops_and_both_export(runs, name, tmp_path):
    """Both backends' runs record what they ran on, and `training export` (TensorFlow, as
    always) turns each checkpoint into a LiteRT model equal to Keras within 1e-5."""
    from shared.model import Model
    from training.__main__ import main

    counts = set()
    for engine in ("tensorflow", "jax"):
        run = runs[engine, name]
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["device"]["backend"] == engine and cfg["device"]["kind"] == "cpu"
        assert cfg["device"]["precision"] == "float32"  # auto: no halves on a CPU
        counts.add(json.dumps(cfg["classes"]["train"]))
        with (run / "history.csv").open() as fh:
            history = list(csv.DictReader(fh))
        assert len(history) == int(_arg(name, "--epochs"))
        assert all(math.isfinite(float(r["loss"])) for r in history)
        model_dir = tmp_path / engine
        # The exporter itself refuses (exit 2) unless LiteRT equals Keras within 1e-5.
        flags = [] if name == "vgg10" else ["--no-explain"]  # test_efficientnet checks its CAM
        cli = ["export", str(run), "--out", str(model_dir), "--checkpoint", "last", *flags]
        assert main(cli) == 0
        assert Model(model_dir).spec.size == int(_arg(name, "--size"))
    assert len(counts) == 1  # the same crops


TORCH_ADAM = "keras.src.backend.torch.optimizers.torch_adam"


class _NoTorch:
    """As if PyTorch were not installed (CI's case; a GPU user's checkpoint comes back)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch" or name.startswith("keras.src.backend.torch"):
            raise ModuleNotFoundError(f"No module named {name!r}")


def test_a_pytorch_checkpoint_exports_where_torch_is_not_installed(runs, tmp_path):
    """On PyTorch, Keras swaps Adam for its fused torch class, and the checkpoint names that
    class's module: a .keras from a PyTorch GPU box does not even load, compiled, without torch.
    Export needs only the weights, so it must take such a checkpoint all the same."""
    import shutil
    import zipfile

    import keras

    from training.__main__ import main

    run = tmp_path / "torch-run"
    shutil.copytree(runs["jax", "vgg10"], run)
    with zipfile.ZipFile(runs["jax", "vgg10"] / "last.keras") as src:
        parts = {n: src.read(n) for n in src.namelist()}
    config = json.loads(parts["config.json"])
    config["compile_config"]["optimizer"]["module"] = TORCH_ADAM  # what PyTorch writes
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(run / "last.keras", "w") as dst:
        for n, data in parts.items():
            dst.writestr(n, data)
    sys.meta_path.insert(0, _NoTorch())
    try:
        with pytest.raises(TypeError, match="torch_adam"):
            keras.models.load_model(run / "last.keras")  # the failure export must not have
        assert main(["export", str(run), "--out", str(tmp_path / "m"), "--checkpoint", "last"]) == 0
    finally:
        sys.meta_path.remove(next(f for f in sys.meta_path if isinstance(f, _NoTorch)))


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_checkpoint_computes_the_same_on_jax_as_on_tensorflow(runs, name):
    """A TensorFlow-trained checkpoint predicted on JAX gives TensorFlow's numbers: the models
    mean the same on both backends ("same" padding of stride-2 layers included)."""
    import keras

    x = np.load(runs["inputs"])[name]
    tf_model = keras.models.load_model(runs["tensorflow", name] / "last.keras")
    want = tf_model.predict(x, verbose=0)
    got = np.load(runs["jax-predictions"])[name]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert want.std() > 0  # a model that says the same to every face would prove nothing


def test_fine_tuning_froze_then_trained_the_backbone_on_jax(runs):
    """The freeze schedule ran on JAX: the stem is trainable in the last checkpoint and moved
    from ImageNet's weights, while batch norm kept ImageNet's statistics (frozen)."""
    import keras

    from training.models.efficientnet_lite import efficientnet_lite0

    model = keras.models.load_model(runs["jax", "efficientnet_lite0"] / "last.keras")
    size = int(_arg("efficientnet_lite0", "--size"))
    imagenet = efficientnet_lite0((size, size, 3))
    assert model.get_layer("stem_conv").trainable
    moved = model.get_layer("stem_conv").get_weights()[0]
    assert not np.array_equal(moved, imagenet.get_layer("stem_conv").get_weights()[0])
    for a, b in zip(
        model.get_layer("top_bn").get_weights(),
        imagenet.get_layer("top_bn").get_weights(),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def split(prepared):
    return load_split([read_prepared(prepared)], "train", 48, "rgb", workers=1, quiet=True)


def test_pydataset_batches_equal_serving_inputs_and_tf_data(split, prepared):
    """Un-augmented, the TensorFlow-free pipeline gives serving's inputs bit for bit, as
    tf.data does, with the same labels and weights."""
    from training.data.feed import Batches

    spec = ModelSpec(name="t", version="0", size=48, color="rgb", scale=1 / 127.5, offset=-1.0)
    weights = np.linspace(0.5, 1.5, len(split.labels)).astype(np.float32)
    ours = Batches(split.images, split.labels, spec, 5, weights=weights, workers=1)
    assert len(ours) == 4
    parts = [ours[i] for i in range(len(ours))]
    xs, ys, ws = (np.concatenate([p[i] for p in parts]) for i in range(3))
    want = np.stack([to_input(Image.open(prepared / r["output"]), spec) for r in split.rows])
    assert xs.dtype == np.float32
    np.testing.assert_array_equal(xs, want)
    ds = make_dataset(split.images, split.labels, spec, 5, weights=weights)
    tf_x, tf_y, tf_w = (np.concatenate([b[i].numpy() for b in ds]) for i in range(3))
    np.testing.assert_array_equal(xs, tf_x)
    np.testing.assert_array_equal(ys, tf_y)
    np.testing.assert_array_equal(ws, tf_w)


def test_pydataset_shuffles_by_seed_and_epoch_and_augments_deterministically(split):
    from training.data.feed import Batches

    spec = ModelSpec(name="t", version="0", size=48, color="rgb")
    ids = np.arange(len(split.labels), dtype=np.float32)  # labels double as row ids

    def epoch(seed, n, aug=NO_AUGMENT):
        b = Batches(split.images, ids, spec, 6, shuffle_seed=seed, epoch=n, augment=aug)
        return [b[i] for i in range(len(b))]

    order = [float(v) for _, y in epoch(1, 0) for v in y[:, 0]]
    assert sorted(order) == ids.tolist() and order != ids.tolist()
    assert order == [float(v) for _, y in epoch(1, 0) for v in y[:, 0]]
    assert order != [float(v) for _, y in epoch(1, 1) for v in y[:, 0]]
    plain = np.concatenate([x for x, _ in epoch(1, 0)])
    for aug in (
        Augment(True, 0, 0, 0, 0),
        Augment(False, 20, 0, 0, 0),
        Augment(False, 0, 20, 0, 0),
        Augment(False, 0, 0, 1.0, 0),
        Augment(False, 0, 0, 0, 1.0),
        Augment(False, 0, 0, 0, 0, tone=1.0),
        Augment(False, 0, 0, 0, 0, noise=1.0),
        Augment(False, 0, 0, 0, 0, border=1.0),
        Augment(False, 0, 0, 0, 0, 1.0),
    ):
        out = np.concatenate([x for x, _ in epoch(1, 0, aug)])
        assert out.shape == plain.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert out.min() >= -0.05 and out.max() <= 1.05, aug
        assert not np.allclose(out, plain), f"{aug} changed nothing"
        np.testing.assert_array_equal(out, np.concatenate([x for x, _ in epoch(1, 0, aug)]))
    full = Augment()
    first, second = (np.concatenate([x for x, _ in epoch(1, n, full)]) for n in (0, 1))
    assert not np.array_equal(first, second)  # a new epoch, new draws


def test_numpy_rotation_shear_and_blur_match_tensorflows():
    """The numpy augmentations are TensorFlow's transforms, not look-alikes: the same rotation
    and shear through ImageProjectiveTransformV3, the same Gaussian through depthwise conv."""
    import tensorflow as tf

    from training.data.feed import affine, blur

    rng = np.random.default_rng(2)
    batch = rng.uniform(0, 255, (3, 40, 40, 3)).astype(np.float32)
    rot = np.array([0.2, -0.15, 0.0], np.float32)
    shear = np.array([0.1, 0.05, -0.17], np.float32)
    cos, sin, tan = np.cos(rot), np.sin(rot), np.tan(shear)
    a0, a1, b0, b1, c = cos, cos * tan - sin, sin, sin * tan + cos, (40 - 1) / 2
    zeros = np.zeros_like(a0)
    transforms = np.stack(
        [a0, a1, c - a0 * c - a1 * c, b0, b1, c - b0 * c - b1 * c, zeros, zeros], axis=1
    )
    want = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch,
        transforms=transforms,
        output_shape=[40, 40],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    ).numpy()
    np.testing.assert_allclose(affine(batch, rot, shear), want, atol=2e-3)

    sigma, radius = 1.7, 5
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    padded = tf.pad(batch[:1], [[0, 0], [radius] * 2, [radius] * 2, [0, 0]], mode="REFLECT")
    kx = np.tile(k.reshape(1, -1, 1, 1), [1, 1, 3, 1])
    ky = np.tile(k.reshape(-1, 1, 1, 1), [1, 1, 3, 1])
    ref = tf.nn.depthwise_conv2d(padded, kx, [1, 1, 1, 1], "VALID")
    ref = tf.nn.depthwise_conv2d(ref, ky, [1, 1, 1, 1], "VALID")[0].numpy()
    np.testing.assert_allclose(blur(batch[0], sigma, radius), ref, atol=1e-3)


def test_device_precision_and_the_unused_gpu_warning():
    cpu = backend.Device("torch", "cpu", "CPU")
    ampere = backend.Device("torch", "gpu", "NVIDIA GeForce RTX 3080", 1, (8, 6))
    turing = backend.Device("torch", "gpu", "NVIDIA GeForce RTX 2070", 1, (7, 5))
    assert backend.policy("auto", cpu) == "float32"
    assert backend.policy("auto", ampere) == "mixed_bfloat16"
    assert backend.policy("auto", turing) == "mixed_float16"
    assert backend.policy("off", ampere) == "float32"
    assert backend.policy("float16", ampere) == "mixed_float16"
    assert backend.policy("on", cpu) == "mixed_float16"
    listed = ["GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1234)"]
    said = backend.unused_gpu_warning(cpu, listed)
    assert said.startswith("warning:") and "RTX 4090" in said and "torch" in said
    assert said.count(". ") == 0 and said.endswith(".")  # one sentence
    assert backend.unused_gpu_warning(ampere, listed) is None
    assert backend.unused_gpu_warning(cpu, []) is None
    here = backend.detect()
    assert here.backend == "tensorflow" and here.kind == "cpu"  # CI: TensorFlow on the CPU


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_gpu_requirements_stay_in_step_and_serving_needs_no_gpu_framework():
    """Each platform's GPU file is training's list plus its framework; TensorFlow's swaps the
    CPU wheel for the CUDA one at the same version. Serving installs none of them."""
    train = _requirements("requirements-train.txt")
    cpu = next(r for r in train if r.startswith("tensorflow-cpu=="))
    version = cpu.split("==")[1]
    tf_gpu = _requirements("requirements-gpu-tf.txt")
    assert sorted(tf_gpu) == sorted(
        [r for r in train if r != cpu] + [f"tensorflow[and-cuda]=={version}"]
    )
    for name, framework in (("torch", "torch"), ("jax", "jax[cuda12]")):
        reqs = _requirements(f"requirements-gpu-{name}.txt")
        assert reqs[0] == "-r requirements-train.txt"
        assert any(r.startswith(framework) for r in reqs[1:])
    for serving in ("requirements.txt", "requirements-local.txt"):
        names = {r.split("=")[0].split("[")[0].split(">")[0] for r in _requirements(serving)}
        assert not names & {"torch", "jax", "jaxlib", "tensorflow", "tensorflow-cpu", "keras"}

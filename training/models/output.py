"""The output every model in the zoo ends in."""

from __future__ import annotations

from keras import layers


def p_fake(x):
    """One sigmoid unit named p_fake: P(fake). float32 even under mixed precision, so the sigmoid
    does not saturate in float16."""
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake")(x)

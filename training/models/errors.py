"""The model zoo's refusal: a model, head or weights file that cannot be built or loaded."""

from ..errors import CommandError


class ModelError(CommandError, ValueError):
    """A model, head or weights file that cannot be used as asked; the message names it."""

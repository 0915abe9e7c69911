"""Fighting Fakes Fairly: the code that serving and training share.

Data flows one way: bytes -> image -> faces -> aligned tensor -> probability -> answer.
Nothing in this package imports TensorFlow.
"""

__version__ = "0.1.0"

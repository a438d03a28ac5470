"""The package version, read by hatch and by :data:`responseloop.__version__`."""

__version__ = "0.1.0.dev0"

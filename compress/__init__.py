"""compress: distil, export and validate image classifiers for edge deployment."""

__version__ = "0.1.0"

"""The version of compress (its own module: any module may read it without importing the package's API)."""

__version__ = "0.1.0"

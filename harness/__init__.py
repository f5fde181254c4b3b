"""Benchmark image-generation APIs: provider performance, blind pairwise ratings, CLIP scores, reports."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("image-arena-harness")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["__version__"]

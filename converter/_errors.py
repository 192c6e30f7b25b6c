"""Converter errors: each names the cause and a fix, so the CLI can print it and exit non-zero."""

from __future__ import annotations


class ConversionError(ValueError):
    """The model could not be converted, or the result does not match Keras."""

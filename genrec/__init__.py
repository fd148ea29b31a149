"""Generative recommendation with multimodal semantic IDs."""

__version__ = "0.1.0"

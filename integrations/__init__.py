"""Glue between the model-agnostic core and concrete backbones (segment-anything, timm, transformers)."""

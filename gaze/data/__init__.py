"""Datasets' shared pieces: image loading, id tables, splits, the attention-map cache, transforms."""

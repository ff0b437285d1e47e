"""Deterministic SYNTHETIC demo sets in the real on-disk layouts (CUB_200_2011, CXR-Eye)."""

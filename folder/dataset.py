"""An ImageFolder split (``root/<split>/<class>/*.jpg``) with optional human masks and ratings.

Class names are the sorted folder names (torchvision's ``find_classes``); images load as RGB
whatever their mode (grey, CMYK, palette) and a truncated file is an error naming it. An
item is ``{'image', 'label', 'id'}`` (id: the file name, GRADIA's key) plus, when the dataset
has human attention, ``'mask'`` (1,H,W) in [0, 1] (all zero for an image without one) and the
per-sample GRADIA weights ``'weight_ce'``, ``'weight_att'`` (gaze.data.human_attention). The
mask goes through the same geometric transform call as the image (G2 fixed).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from gaze.data.human_attention import HumanAttention
from gaze.data.images import load_rgb_image
from gaze.data.transforms import JointTransform


def folder_samples(root: str | Path, split: str) -> tuple[list[tuple[str, int]], list[str]]:
    """([(path, label)], class names) of ``root/<split>``; an error names a missing or empty folder."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected {Path(root)}/{{train,val,test}}/<class>/*.jpg)")
    class_names, class_to_idx = find_classes(str(folder))
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    if not samples:
        raise FileNotFoundError(f"{folder}: no images in its class folders ({', '.join(class_names)})")
    return samples, class_names


class ImageFolderDataset(Dataset):
    """Images of an ImageFolder split (or any list of them), with their human attention."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        class_names: Sequence[str],
        transform: JointTransform,
        human: HumanAttention | None = None,
    ) -> None:
        """Args:
            samples: (path, label) pairs.
            class_names: C names (label k is ``class_names[k]``).
            transform: joint image + attention transform (``build_resize_transforms``).
            human: masks and ratings keyed by file name; None: items carry no mask.
        """
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.ids = [Path(path).name for path, _ in self.samples]
        repeated = sorted(name for name, count in Counter(self.ids).items() if count > 1)
        if repeated:
            raise ValueError(f"image file names must be unique (they key masks and ratings): {repeated[:3]}")
        self.class_names = list(class_names)
        self.transform = transform
        self.human = human

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.samples[index]
        sample_id = self.ids[index]
        image = load_rgb_image(path)
        item: dict[str, Any] = {"label": torch.tensor(label, dtype=torch.long), "id": sample_id}
        if self.human is None:
            item["image"], _ = self.transform(image, None)
            return item
        return {**item, **self.human.transform(self.transform, image, None, sample_id)}

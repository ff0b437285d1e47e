"""Readers of the fine-grained datasets' own layouts, as CAL and the NYCU HW1 code read them (gradia_cal.md B10, C1).

Each returns a :class:`Layout`: (path, label) lists per split, the class names, and, for the
NYCU HW1 layout, the unlabelled test images in ``testing_img_order.txt`` order (for
``answer.txt``). A malformed line is an error naming the file and the line; a file name read
from a list never leaves its image folder (``gaze.safe_paths``).

* ``cars``: Stanford Cars, ``cars_annos.mat`` with the struct array ``annotations``
  (``relative_im_path``, ``class`` 1-based, ``test`` 0/1) and ``class_names``.
* ``aircraft``: FGVC-Aircraft, ``data/variants.txt`` (the line number is the label),
  ``data/images_variant_{trainval,test}.txt`` ("<7-character id> <variant>"),
  images ``data/images/<id>.jpg``.
* ``nycu_hw1``: ``classes.txt`` (the line index is the label), ``training_labels.txt``
  ("<file> <class name>"), ``testing_img_order.txt`` (one file per line),
  ``training_images/``, ``testing_images/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaze.atomic import atomic_path
from gaze.data.images import TableFormatError
from gaze.safe_paths import check_plain_name, check_relative_path

LAYOUTS = {
    "imagefolder": "root/{train,val,test}/<class>/*.jpg (GRADIA's layout)",
    "pim": "PIM's: train/<class>/*.jpg and test/<class>/*.jpg (root/train, root/test or train_dir, test_dir)",
    "cars": "Stanford Cars: cars_annos.mat (relative_im_path, class, test) and the images it names",
    "aircraft": "FGVC-Aircraft: data/variants.txt, data/images_variant_{trainval,test}.txt, data/images/",
    "nycu_hw1": "NYCU VRDL HW1: classes.txt, training_labels.txt, testing_img_order.txt, training_images/, testing_images/",
}


@dataclass
class Layout:
    """Labelled (path, label) lists of 'train' (and 'test' where labelled), class names, unlabelled test files."""

    samples: dict[str, list[tuple[str, int]]]
    class_names: list[str]
    unlabelled: list[str] = field(default_factory=list)


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a text file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TableFormatError(f"{path}: not UTF-8 text ({error})") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_aircraft(root: str | os.PathLike) -> Layout:
    """FGVC-Aircraft (``fgvc-aircraft-2013b``) as CAL reads it: trainval -> 'train', test -> 'test'."""
    data = Path(root) / "data"
    variants = [text for _, text in _lines(data / "variants.txt")]
    index = {name: label for label, name in enumerate(variants)}
    samples = {}
    for split, file in (("train", "images_variant_trainval.txt"), ("test", "images_variant_test.txt")):
        listed = []
        for number, text in _lines(data / file):
            image_id, _, variant = text.partition(" ")
            if len(image_id) != 7 or not variant:
                raise TableFormatError(f"{data / file}:{number}: expected '<7-character id> <variant>', got {text!r}")
            if variant not in index:
                raise TableFormatError(f"{data / file}:{number}: variant {variant!r} is not in {data / 'variants.txt'}")
            name = check_plain_name(f"{image_id}.jpg", f"{data / file}:{number}")
            listed.append((str(data / "images" / name), index[variant]))
        samples[split] = listed
    return Layout(samples, variants)


def read_cars(root: str | os.PathLike) -> Layout:
    """Stanford Cars from ``cars_annos.mat`` (``test`` 1 -> 'test', else 'train'), images relative to ``root``."""
    from scipy.io import loadmat

    root = Path(root)
    path = root / "cars_annos.mat"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (Stanford Cars' annotation file)")
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (ValueError, OSError) as error:
        raise TableFormatError(f"{path}: not a readable MATLAB file ({error})") from None
    if "annotations" not in mat or "class_names" not in mat:
        raise TableFormatError(f"{path}: expected the variables 'annotations' and 'class_names', found "
                               f"{sorted(k for k in mat if not k.startswith('__'))}")
    names = [str(name) for name in np.atleast_1d(mat["class_names"])]  # squeeze_me: one entry is a scalar
    samples: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for index, entry in enumerate(np.atleast_1d(mat["annotations"])):
        where = f"{path}: annotations[{index}]"
        try:
            relative, label, test = str(entry.relative_im_path), int(getattr(entry, "class")), int(entry.test)
        except (AttributeError, KeyError, TypeError, ValueError):
            raise TableFormatError(f"{where}: needs relative_im_path, class and test") from None
        if not 1 <= label <= len(names) or test not in (0, 1):
            raise TableFormatError(f"{where}: class {label} (1..{len(names)}) / test {test} (0 or 1) out of range")
        samples["test" if test else "train"].append((str(root / check_relative_path(relative, where)), label - 1))
    return Layout(samples, names)


def read_nycu_hw1(root: str | os.PathLike) -> Layout:
    """The NYCU VRDL HW1 layout: labelled training images and the unlabelled test order."""
    root = Path(root)
    names = [text for _, text in _lines(root / "classes.txt")]
    index = {name: label for label, name in enumerate(names)}
    train = []
    for number, text in _lines(root / "training_labels.txt"):
        file, _, name = text.partition(" ")
        if not name:
            raise TableFormatError(f"{root / 'training_labels.txt'}:{number}: expected '<file> <class name>', got {text!r}")
        if name not in index:
            raise TableFormatError(f"{root / 'training_labels.txt'}:{number}: class {name!r} is not in classes.txt")
        file = check_plain_name(file, f"{root / 'training_labels.txt'}:{number}")
        train.append((str(root / "training_images" / file), index[name]))
    order = [check_plain_name(text, f"{root / 'testing_img_order.txt'}:{number}")
             for number, text in _lines(root / "testing_img_order.txt")]
    return Layout({"train": train}, names, [str(root / "testing_images" / file) for file in order])


READERS = {"cars": read_cars, "aircraft": read_aircraft, "nycu_hw1": read_nycu_hw1}


def read_layout(layout: str, root: str | os.PathLike) -> Layout:
    """The :class:`Layout` of ``root`` read as ``layout`` (a key of :data:`READERS`)."""
    if layout not in READERS:
        raise ValueError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    return READERS[layout](root)


def write_answer(path: str | os.PathLike, files: list[str], predicted: list[int], class_names: list[str]) -> Path:
    """NYCU HW1's ``answer.txt``: "<file> <class name>" per test image in ``testing_img_order.txt``
    order, newline-joined without a trailing newline (C5), written where the caller says (K2)."""
    path = Path(path)
    lines = [f"{Path(file).name} {class_names[label]}" for file, label in zip(files, predicted)]
    with atomic_path(path) as temporary:
        temporary.write_bytes("\n".join(lines).encode("utf-8"))
    return path

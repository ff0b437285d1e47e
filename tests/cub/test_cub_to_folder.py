"""cub/to_folder.py: CUB_200_2011 as PIM's ImageFolder train/ + test/ tree of symlinks, read back by folder/."""

from __future__ import annotations

import os

import pytest

from cub import to_folder
from folder.dataset import folder_samples
from gaze.synthetic.cub import make_synthetic_cub


def test_the_tree_links_every_image_by_the_official_split_and_reads_as_imagefolder(tmp_path, capsys):
    root = make_synthetic_cub(tmp_path / "CUB_200_2011", num_classes=3, train_per_class=4, test_per_class=2,
                              image_size=(32, 48), seed=2)
    out = tmp_path / "datas"
    assert to_folder.main([f"--root={root}", f"--out={out}"]) == 0
    assert "12 images of 3 classes (12 new links)" in capsys.readouterr().out
    train, classes = folder_samples(out, "train")
    test, test_classes = folder_samples(out, "test")
    assert (len(train), len(test)) == (12, 6) and classes == test_classes and len(classes) == 3
    split = dict(line.split() for line in (root / "train_test_split.txt").read_text().split("\n") if line.strip())
    images = dict(line.split(maxsplit=1) for line in (root / "images.txt").read_text().split("\n") if line.strip())
    labels = dict(line.split() for line in (root / "image_class_labels.txt").read_text().split("\n") if line.strip())
    expected = {(images[i], int(labels[i]) - 1) for i in images if split[i] == "1"}  # by hand from the files
    linked = {(os.path.relpath(os.readlink(path), root / "images"), label) for path, label in train}
    assert linked == expected and all(os.path.islink(path) for path, _ in train + test)
    assert to_folder.main([f"--root={root}", f"--out={out}"]) == 0  # again: the links are kept
    assert "(0 new links)" in capsys.readouterr().out
    train_path = train[0][0]
    os.unlink(train_path)
    open(train_path, "w").close()  # something else in its place: refused, not replaced
    with pytest.raises(FileExistsError, match="is not a link"):
        to_folder.main([f"--root={root}", f"--out={out}"])

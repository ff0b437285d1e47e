"""Write CUB_200_2011 as PIM's ImageFolder tree: symlinks, nothing copied (FGVC-PIM reads ../datas/{train,test}/).

    python cub/to_folder.py --root=/data/CUB_200_2011 --out=../datas
    python folder/train.py folder/configs/CUB200_SwinT.yaml --pretrain_path=<Swin-L weights>

``<out>/train/<class folder>/<file>.jpg`` for the 5,994 official training images and
``<out>/test/...`` for the 5,794 test images (train_test_split.txt), each a symbolic link to
``<root>/images/<class folder>/<file>.jpg``; the class folders sort as the labels (001... to
200...). Running it again keeps links that already point at their image and refuses to
replace anything else. Names come from images.txt and are checked to be plain names.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from cub.dataset import CUBDataset
from gaze.safe_paths import check_plain_name

#: PIM's split folder <- the CUB split it holds.
FOLDER_SPLITS = {"train": "trainval", "test": "test"}


def link_split(dataset: CUBDataset, out: Path) -> int:
    """Link every image of ``dataset`` into ``out/<class folder>/<file>``; returns how many were made."""
    made = 0
    for path in dataset.paths:
        source = Path(path).resolve()
        names = [check_plain_name(part, f"{dataset.root / 'images.txt'}: {path}") for part in Path(path).parts[-2:]]
        link = out.joinpath(*names)
        if link.is_symlink() or link.exists():
            if link.is_symlink() and Path(os.readlink(link)) == source:
                continue
            raise FileExistsError(f"{link}: exists and is not a link to {source}; choose an empty --out")
        link.parent.mkdir(parents=True, exist_ok=True)
        temporary = link.with_name(f".{link.name}.tmp")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(source)
        os.replace(temporary, link)
        made += 1
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the CUB_200_2011 folder (images.txt, images/, ...)")
    parser.add_argument("--out", required=True, help="the ImageFolder root to write: <out>/train, <out>/test")
    args = parser.parse_args(argv)
    out = Path(args.out)
    for folder, split in FOLDER_SPLITS.items():
        dataset = CUBDataset(args.root, split=split)
        made = link_split(dataset, out / folder)
        classes = Counter(Path(path).parent.name for path in dataset.paths)
        print(f"{out / folder}: {len(dataset.paths)} images of {len(classes)} classes ({made} new links)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

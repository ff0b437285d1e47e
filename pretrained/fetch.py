"""Fetch pretrained weights into pretrained/, verifying SHA-256 (see pretrained/README.md).

    python pretrained/fetch.py resnet50        # the torchvision ImageNet ResNet-50 the papers use
    python pretrained/fetch.py tf_efficientnet_b0   # the EfficientNet-b0 weights of the CXR-Eye GAT/KFN
    python pretrained/fetch.py --list

Nothing in the project downloads weights at train time: configs name a local file
(``pretrain_path``), or a package alias such as ``package:efficientnet-lite0``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaze.download import DownloadError, download_file

HERE = Path(__file__).resolve().parent

#: name -> (URL, SHA-256 or its torch.hub prefix, licence, what it is).
WEIGHTS = {
    "resnet50": (
        "https://download.pytorch.org/models/resnet50-19c8e357.pth",
        "19c8e357",  # torch.hub convention: the file name carries the digest's first 8 hex digits
        "BSD-3-Clause (torchvision)",
        "torchvision ImageNet ResNet-50 v1 weights, pretrain_path of CUB-GHA GAT (cub_pim.md §1.3)",
    ),
    "resnet101": (
        "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "63fe2227",
        "BSD-3-Clause (torchvision)",
        "torchvision ImageNet ResNet-101 v1 weights, pretrain_path of CAL (gradia_cal.md B2)",
    ),
    "inception_v3": (
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        "0cc3c7bd",
        "Apache-2.0 (torchvision, Google's weights)",
        "torchvision ImageNet Inception-v3 weights, pretrain_path of WS-DAN.PyTorch (gradia_cal.md B12)",
    ),
    "tf_efficientnet_b0": (
        "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/tf_efficientnet_b0_aa-827b6e33.pth",
        "827b6e33",  # timm release files carry the digest prefix like torch.hub files
        "Apache-2.0 (timm, TensorFlow port)",
        "ImageNet EfficientNet-b0 ported from TensorFlow: the 'imagenet' weights of smp's timm-efficientnet-b0 "
        "encoder, pretrain_path of the HAFC CXR-Eye GAT/KFN (cxr.md §2.3)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"weights to fetch: {', '.join(WEIGHTS)}")
    parser.add_argument("--list", action="store_true", help="list the known weights")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for name, (url, digest, licence, about) in WEIGHTS.items():
            print(f"{name}: {about}\n  {url}\n  sha256 {digest}..., licence {licence}")
        return 0
    unknown = [n for n in args.names if n not in WEIGHTS]
    if unknown:
        print(f"error: unknown weights {unknown}; known: {', '.join(WEIGHTS)}", file=sys.stderr)
        return 2
    for name in args.names:
        url, digest, _, _ = WEIGHTS[name]
        try:
            download_file(url, HERE / url.rsplit("/", 1)[1], digest)
        except DownloadError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

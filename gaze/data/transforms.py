"""Joint image + attention transforms (torchvision.transforms.v2), DESIGN.md §2.

The image and its attention map go through **one** call of a ``transforms.v2`` pipeline, so
every random geometric parameter (crop box, flip) is drawn once and applied to both. The
map travels as :class:`AttentionMap`, a ``tv_tensors.Mask`` subclass:

* as a Mask it gets the geometric ops (crop, flip, pad, ...) and is passed through
  untouched by the photometric ones (ColorJitter, ToDtype, Normalize);
* unlike a Mask it is **resized bilinearly** (with antialiasing): v2 resizes a Mask with
  nearest neighbour whatever ``interpolation`` says, which would turn a continuous map into
  blocks. Bilinear weights are non-negative and sum to 1, so values stay in [0, 1].

The map leaves the transform as it was read, with only the geometry applied (values in
[0, 1], clamped): each method normalises it the way its paper does, so the reading a paper
relies on reaches its model (GAT on CUB: global min-max after the crop; GAT and KFN on
CXR-Eye: ``minmax(H) > 0.3`` of the raw PNG reading; KFN on CUB: the raw map / 255). The
published CUB-GHA loader's min-max has no epsilon and returns NaN for a constant map
(cub_pim.md §1.7); :func:`normalize_attention`, which GAT uses, keeps such a map as it is.

Published recipe (cub_pim.md §1.7, GAT): train = resize shorter side to the input size,
random crop, horizontal flip p=0.5 shared by image and map, ColorJitter(brightness 0.2,
contrast 0.2) on the image only, ImageNet normalisation; test = resize + centre crop.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional import InterpolationMode

from gaze.attention.heatmap import opencv_gaussian_sigma, sample_blurred_dots

#: ImageNet channel statistics (torchvision weights; cub_pim.md §1.7 "ImageNet Normalize").
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Smallest range divided by in the per-map min-max; below it a map counts as constant.
ATTENTION_EPS = 1e-6


class AttentionMap(tv_tensors.Mask):
    """A continuous (1, H, W) attention map: geometry of a Mask, but bilinear resizing."""


@F.register_kernel(F.resize, AttentionMap)
def _resize_attention(
    attention: AttentionMap, size: list[int] | None, max_size: int | None = None, **kwargs: Any
) -> AttentionMap:
    """Resize a map bilinearly with antialiasing, whatever interpolation the image uses."""
    output = F.resize_image(
        attention.as_subclass(torch.Tensor),
        size,
        interpolation=InterpolationMode.BILINEAR,
        max_size=max_size,
        antialias=True,
    )
    return tv_tensors.wrap(output, like=attention)


@F.register_kernel(F.resized_crop, AttentionMap)
def _resized_crop_attention(
    attention: AttentionMap, top: int, left: int, height: int, width: int, size: list[int], **kwargs: Any
) -> AttentionMap:
    """Crop then resize a map bilinearly (RandomResizedCrop), like :func:`_resize_attention`."""
    output = F.resized_crop_image(
        attention.as_subclass(torch.Tensor),
        top,
        left,
        height,
        width,
        size,
        interpolation=InterpolationMode.BILINEAR,
        antialias=True,
    )
    return tv_tensors.wrap(output, like=attention)


def normalize_attention(maps: torch.Tensor, eps: float = ATTENTION_EPS) -> torch.Tensor:
    """Min-max normalise each (..., H, W) map to [0, 1]; a (near-)constant map is kept as is.

    A map whose range ``max - min`` is at most ``eps`` carries no spatial information and is
    only clamped to [0, 1]: an empty map stays zeros and a uniform fill of ones stays ones.
    The published loader divides by the range with no epsilon and returns NaN for such a
    map (cub_pim.md §1.7).

    Args:
        maps: (..., H, W) float maps.
        eps: floor on the range.

    Returns:
        New float32 tensor of the same shape with values in [0, 1].
    """
    maps = maps.to(torch.float32)
    low, high = torch.aminmax(maps.flatten(-2), dim=-1)
    span = (high - low)[..., None, None]
    scaled = (maps - low[..., None, None]) / span.clamp_min(eps)
    return torch.where(span > eps, scaled, maps).clamp_(0.0, 1.0)


def _as_image(image: Image.Image | torch.Tensor | np.ndarray) -> tv_tensors.Image:
    """PIL RGB image, (3, H, W) tensor or (H, W, 3) uint8 array -> tv_tensors.Image."""
    if isinstance(image, Image.Image):
        return F.pil_to_tensor(image if image.mode == "RGB" else image.convert("RGB")).as_subclass(
            tv_tensors.Image
        )
    if isinstance(image, np.ndarray):
        return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
    return tv_tensors.Image(image)


def as_attention_map(gaze: Any, image_size: Sequence[int]) -> AttentionMap:
    """(H, W)/(1, H, W) tensor or array, or a PIL 'L' image -> float (1, H, W) map at the image size.

    8-bit input (uint8 or PIL) is scaled by 1/255. A map of another size than the image is
    resized bilinearly to it first (the published loader resizes the map to the original
    image size: cub_pim.md §1.7).
    """
    if isinstance(gaze, Image.Image):
        gaze = gaze.convert("L")
    attention = gaze if isinstance(gaze, torch.Tensor) else torch.from_numpy(np.array(gaze))
    if attention.dtype == torch.uint8:
        attention = attention.to(torch.float32) / 255.0
    attention = attention.to(torch.float32)
    if attention.ndim == 2:
        attention = attention[None]
    if attention.ndim != 3 or attention.shape[0] != 1:
        raise ValueError(f"gaze map must be (H, W) or (1, H, W), got shape {tuple(attention.shape)}")
    if tuple(attention.shape[-2:]) != tuple(image_size):
        attention = F.resize_image(
            attention, list(image_size), interpolation=InterpolationMode.BILINEAR, antialias=True
        )
    return AttentionMap(attention)


class JointTransform:
    """Apply one v2 pipeline to an image and (optionally) its attention map in one call.

    ``mean`` and ``std`` are the image normalisation the pipeline ends with (for display);
    ``reads_fixations`` is False: the gaze is a map (see :class:`GGCAMTransform`).

    Call with ``(image, gaze)`` where ``image`` is a PIL RGB image or a (3, H, W) tensor
    and ``gaze`` an (H, W) or (1, H, W) map in [0, 1] (or 8-bit), or None. Returns
    ``(image, gaze)``: the (3, S, S) float32 normalised image and the (1, S, S) float32 map
    in [0, 1] with the same geometry, its values as read (None when no map was given).
    """

    reads_fixations = False

    def __init__(self, pipeline: v2.Transform, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        self.pipeline = pipeline
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(
        self, image: Image.Image | torch.Tensor, gaze: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = _as_image(image)
        if gaze is None:
            return self.pipeline(image).as_subclass(torch.Tensor), None
        attention = as_attention_map(gaze, image.shape[-2:])
        image, attention = self.pipeline(image, attention)
        return image.as_subclass(torch.Tensor), attention.as_subclass(torch.Tensor).clamp(0.0, 1.0)

    def with_mask(
        self, image: Image.Image | torch.Tensor, gaze: Any, mask: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(image, gaze or None, mask)`` through one pipeline call: the human mask (any size,
        resized to the image first, as a gaze map is) gets the same crop and flip as the image
        and the gaze. The mask leaves as a (1, S, S) map in [0, 1], soft at its resized edges."""
        image = _as_image(image)
        size = image.shape[-2:]
        layers = [as_attention_map(mask, size)] + ([as_attention_map(gaze, size)] if gaze is not None else [])
        image, stacked = self.pipeline(image, AttentionMap(torch.cat(layers)))
        stacked = stacked.as_subclass(torch.Tensor).clamp(0.0, 1.0)
        return image.as_subclass(torch.Tensor), stacked[1:] if gaze is not None else None, stacked[:1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


def build_transforms(
    train: bool,
    input_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    color_jitter: tuple[float, ...] | None = (0.2, 0.2),
    resize_size: int | None = None,
    hflip: float = 0.5,
) -> JointTransform:
    """Build the published GAT image + attention transform (cub_pim.md §1.7).

    Args:
        train: random crop + flip + colour jitter when True; centre crop when False.
        input_size: side S of the square output (448 in the paper).
        mean, std: per-channel normalisation of the image (ImageNet by default).
        color_jitter: (brightness, contrast[, saturation]) of ColorJitter on the image only
            (train); None or zeros to disable (the KFN recipe has none; CAL's is (0.126, 0, 0.5)).
        resize_size: shorter side before cropping; None = ``input_size`` as published
            (mmpretrain's CUB recipe uses 600 for 448 crops: spec style.md §1.5).
        hflip: probability of the shared horizontal flip (train).

    Returns:
        A :class:`JointTransform`: ``(image, gaze or None) -> (image (3,S,S), gaze (1,S,S) or None)``.
    """
    resize = v2.Resize(resize_size or input_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    if train:
        steps: list[v2.Transform] = [resize, v2.RandomCrop(input_size), v2.RandomHorizontalFlip(hflip)]
        if color_jitter is not None and any(color_jitter):
            brightness, contrast, saturation = (*color_jitter, 0.0)[:3]
            steps.append(v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation))
    else:
        steps = [resize, v2.CenterCrop(input_size)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return JointTransform(v2.Compose(steps), mean, std)


def build_full_resolution_transforms(mean: Sequence[float] = IMAGENET_MEAN,
                                     std: Sequence[float] = IMAGENET_STD) -> JointTransform:
    """No geometry at all: the image at its own resolution, normalised, and its map as read
    (what the annotation app shows people and draws masks on)."""
    steps = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return JointTransform(v2.Compose(steps), mean, std)


#: NYCU VRDL HW1's normalisation, computed on its training images (gradia_cal.md C2).
HW1_MEAN = (0.48194, 0.49756, 0.43214)
HW1_STD = (0.13271, 0.12794, 0.17289)
#: HW1 resizes to 324 x 324 for its 300-px crops.
HW1_RESIZE_RATIO = 324 / 300


def build_hw1_transforms(train: bool, input_size: int = 300) -> JointTransform:
    """NYCU HW1's recipe (C2), scaled to ``input_size``: train = Resize(324x324) -> RandomRotation(20)
    -> horizontal flip -> RandomCrop(300); test = Resize(324x324) -> CenterCrop(300); its own mean/std."""
    side = round(input_size * HW1_RESIZE_RATIO)
    steps: list[v2.Transform] = [v2.Resize([side, side], interpolation=InterpolationMode.BILINEAR, antialias=True)]
    if train:
        steps += [v2.RandomRotation(20), v2.RandomHorizontalFlip(), v2.RandomCrop(input_size)]
    else:
        steps.append(v2.CenterCrop(input_size))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(HW1_MEAN), std=list(HW1_STD))]
    return JointTransform(v2.Compose(steps), HW1_MEAN, HW1_STD)


#: PIM's resize side per input px: 510 at its 384 px input (cub_pim.md §3.2).
PIM_RESIZE_RATIO = 510 / 384


def build_pim_transforms(train: bool, input_size: int = 384, resize_size: int | None = None) -> JointTransform:
    """PIM's recipe (cub_pim.md §3.2): Resize(510x510, squash) -> train: RandomCrop(input) ->
    flip -> GaussianBlur(5, sigma 0.1-5) p 0.1 -> RandomAdjustSharpness(1.5) p 0.1; test:
    CenterCrop(input); ImageNet normalisation.

    Args:
        train: the training recipe (else the test one).
        input_size: the crop side (PIM's ``data_size``).
        resize_size: the square resize side; None: ``round(input_size * 510 / 384)`` (510 at
            384 px as published; the published code keeps 510 at 448 px too: pass 510).
    """
    side = int(resize_size) if resize_size else round(input_size * PIM_RESIZE_RATIO)
    if side < input_size:
        raise ValueError(f"resize_size={side} is smaller than input_size={input_size}: nothing to crop")
    steps: list[v2.Transform] = [v2.Resize([side, side], interpolation=InterpolationMode.BILINEAR, antialias=True)]
    if train:
        steps += [v2.RandomCrop(input_size), v2.RandomHorizontalFlip(),
                  v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 5.0))], p=0.1),
                  v2.RandomAdjustSharpness(sharpness_factor=1.5, p=0.1)]
    else:
        steps.append(v2.CenterCrop(input_size))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))]
    return JointTransform(v2.Compose(steps), IMAGENET_MEAN, IMAGENET_STD)


def denormalize(
    images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undo :func:`build_transforms`' normalisation: (..., 3, H, W) -> values in [0, 1] (clamped)."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device)[:, None, None]
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device)[:, None, None]
    return (images * std_t + mean_t).clamp(0.0, 1.0)


def build_resize_transforms(
    train: bool,
    size: int | Sequence[int],
    augment: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    flip: bool = False,
) -> JointTransform:
    """Resize image and attention to ``size`` without keeping the aspect ratio (CXR recipe).

    The CXR-Eye GAT/KFN loader resizes every radiograph to 224x224 and uses no augmentation
    (cxr.md §2.1). ``augment`` adds, for training only, a mild shared RandomAffine (±5°,
    ±4% shift, 0.95-1.05 scale) and brightness/contrast jitter on the image; never a flip
    (left and right are anatomically different on a chest film).

    Args:
        train: apply the augmentation (when ``augment``).
        size: output side, or (H, W).
        augment: see above (off as published).
        mean, std: image normalisation (ImageNet).
        flip: for training, a RandomHorizontalFlip of image and attention together (GRADIA's
            recipe, gradia_cal.md A4; its published loader flipped the image alone, G2).
    """
    size = [size, size] if isinstance(size, int) else [int(s) for s in size]
    steps: list[v2.Transform] = [v2.Resize(size, interpolation=InterpolationMode.BILINEAR, antialias=True)]
    if train and flip:
        steps.append(v2.RandomHorizontalFlip())
    if train and augment:
        steps += [v2.RandomAffine(degrees=5, translate=(0.04, 0.04), scale=(0.95, 1.05)),
                  v2.ColorJitter(brightness=0.2, contrast=0.2)]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    return JointTransform(v2.Compose(steps), mean, std)



#: GG-CAM's data recipe (cxr.md §3.1): every ``GGCAM_DOWNSAMPLE``-th pixel of the padded film,
#: gaze blurred as ``Down2_Blur500`` (cv2.GaussianBlur ksize 501, sigma 0 -> 75.5 px) at the
#: resolution of a MIMIC film whose longer side is ``GGCAM_REFERENCE_SIDE`` px.
GGCAM_DOWNSAMPLE, GGCAM_BLUR, GGCAM_REFERENCE_SIDE = 2, 500, 3056


def padded_placement(film_hw: Sequence[int], canvas_hw: Sequence[int]) -> tuple[float, int, int, int, int]:
    """Where a film lands on a zero canvas, centred: ``(scale, top, left, height, width)``.

    ``scale`` is 1 unless the film is larger than the canvas (then it is shrunk to fit,
    keeping its aspect: GG-CAM's 3072x2560 canvas holds MIMIC's 3056x2544 films, and the
    published code has no such case); ``top``/``left`` round down.
    """
    film_h, film_w = film_hw
    canvas_h, canvas_w = canvas_hw
    scale = min(1.0, canvas_h / film_h, canvas_w / film_w)
    height, width = (film_h, film_w) if scale == 1.0 else (max(1, int(film_h * scale)), max(1, int(film_w * scale)))
    return scale, (canvas_h - height) // 2, (canvas_w - width) // 2, height, width


class GGCAMTransform:
    """GG-CAM's published input recipe (cxr.md §3.1), image and gaze; no augmentation.

    Image: the film zero-padded, centred, onto a canvas of ``downsample`` x the input size
    (3072x2560 for the published 1536x1280), every ``downsample``-th pixel kept, divided by
    its maximum, grey in 3 channels, with **no** mean/std normalisation (``mean = 0``,
    ``std = 1``; the from-scratch backbones see [0, 1] values).
    Gaze (from the fixations, ``reads_fixations``): the dot image (+1 per fixation) blurred
    by ``cv2.GaussianBlur(ksize=blur + 1, sigma=0)`` at film resolution (sd 75.5 px, half-width
    250 px for Blur500, reflect-101 borders), padded and subsampled exactly like the image
    (evaluated at those pixels only), divided by its maximum. GG-CAM then point-samples it
    every 32 input px (the 64 px of the published 48x40 grid) and divides by the maximum
    again (``GGCAM(gaze_sampling='point')``).

    Deviation: kernel sd and half-width scale with the film's longer side / 3056 px, so they
    are the published values for MIMIC's 3056-px films and the same relative blur for other
    sizes (the published kernel is 501 px for every film); ``sigma`` fixes the sd instead.

    Args:
        input_hw: (H, W) of the network input (published 1536x1280).
        downsample: pixel step (published 2).
        blur: the published blur name (200, 500, 800; Blur500 trains), ksize = blur + 1 if even.
        sigma: kernel sd in film pixels (half-width scaled alike); None: from ``blur``.
        weighted: weight the dots by fixation duration (published: +1 each).
    """

    reads_fixations = True
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def __init__(self, input_hw: Sequence[int], downsample: int = GGCAM_DOWNSAMPLE, blur: int = GGCAM_BLUR,
                 sigma: float | None = None, weighted: bool = False) -> None:
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.downsample = int(downsample)
        self.canvas_hw = (self.input_hw[0] * self.downsample, self.input_hw[1] * self.downsample)
        ksize = blur + 1 if blur % 2 == 0 else blur
        self.reference_sigma, self.reference_radius = opencv_gaussian_sigma(ksize), (ksize - 1) / 2
        self.sigma, self.weighted = sigma, weighted

    def image(self, image: Image.Image) -> tuple[torch.Tensor, tuple[float, int, int]]:
        """(3, H, W) max-normalised input of an RGB film, and its placement (scale, top, left)."""
        scale, top, left, height, width = padded_placement((image.height, image.width), self.canvas_hw)
        if scale != 1.0:
            image = image.resize((width, height), Image.BILINEAR)
        film = F.pil_to_tensor(image.convert("RGB"))  # (3, h, w) uint8
        canvas = torch.zeros((3, *self.canvas_hw), dtype=torch.uint8)
        canvas[:, top : top + height, left : left + width] = film
        pixels = canvas[:, :: self.downsample, :: self.downsample].to(torch.float32)
        return pixels / pixels.max().clamp_min(1.0), (scale, top, left)

    def gaze(self, record: Any, placement: tuple[float, int, int]) -> torch.Tensor:
        """(1, H, W) blurred-dot map at the input pixels, divided by its max (zeros without fixations)."""
        scale, top, left = placement
        relative = max(record.width, record.height) / GGCAM_REFERENCE_SIDE
        sigma = self.sigma if self.sigma is not None else self.reference_sigma * relative
        radius = sigma * self.reference_radius / self.reference_sigma
        rows = (np.arange(self.input_hw[0]) * self.downsample - top) / scale
        cols = (np.arange(self.input_hw[1]) * self.downsample - left) / scale
        values = torch.from_numpy(sample_blurred_dots(record, rows, cols, sigma, radius, self.weighted))
        return (values / values.max().clamp_min(1e-300)).to(torch.float32)[None]

    def __call__(self, image: Image.Image, record: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        pixels, placement = self.image(image)
        return pixels, None if record is None else self.gaze(record, placement)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_hw={self.input_hw}, downsample={self.downsample}, canvas={self.canvas_hw})"

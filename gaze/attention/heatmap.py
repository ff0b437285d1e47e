"""Fixations -> Gaussian attention maps (vectorised and batched), and heatmap files.

A map is a float32 tensor in [0, 1] of shape (H, W): the original image size unless a
size is given (DESIGN.md §2). Two recipes:

* **image coordinates** (:func:`render_heatmaps`): ``H(x, y) = sum_i d_i exp(-((x - x_i)^2 +
  (y - y_i)^2) / (2 s^2))`` at integer pixels x = 0..W-1, y = 0..H-1, min-max normalised.
  A Gaussian is separable, so a batch of maps is one batched matrix product
  ``(Gy * d)^T @ Gx`` of (N, H) and (N, W) profiles: no loop over pixels or fixations.
* **display coordinates** (:func:`render_display_heatmap`): the published CUB-GHA recipe
  exactly (cub_pim.md §1.10): a 500x500 window of sd 75 screen pixels per fixation on the
  1920x1080 screen, cut to the displayed rectangle, normalised, resized by PIL to the
  original size through an 8-bit image.
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from gaze.atomic import atomic_write_bytes
from gaze.attention.fixations import SCREEN_HEIGHT, SCREEN_WIDTH, FixationRecord


class HeatmapFileError(OSError):
    """An attention-map image that cannot be read; the message names the file."""


#: sd of the published Gaussian, in screen pixels (cub_pim.md §1.10).
DISPLAY_SIGMA = 75.0
#: The published kernel is a 500x500 window with its centre at index 250: it covers the
#: offsets -250..249 screen pixels around the fixation (cub_pim.md §1.10, step 1).
DISPLAY_WINDOW = 500
DISPLAY_WINDOW_CENTRE = 250


def screen_fit_sigma(width: int, height: int, display_sigma: float = DISPLAY_SIGMA) -> float:
    """Default sigma in image pixels: the published 75-screen-pixel sd, seen in the image.

    The run files hold no display geometry (cub_pim.md §1.11), so the image is assumed
    shown as large as fits the 1920x1080 screen (scale ``min(1920/W, 1080/H)``), and
    ``sigma = 75 / scale``. For the common 500x375 CUB image this is 26.0 px (about 7% of
    the image height), the spatial spread the released CUB-GHA maps have on screen.
    """
    scale = min(SCREEN_WIDTH / width, SCREEN_HEIGHT / height)
    return display_sigma / scale


def gaussian_profiles(centres: torch.Tensor, length: int, sigmas: torch.Tensor) -> torch.Tensor:
    """1-D Gaussians ``exp(-(k - c)^2 / (2 s^2))`` at k = 0..length-1.

    Args:
        centres: (B, N) centres in pixels.
        length: number of pixels along the axis.
        sigmas: (B,) standard deviations in pixels.

    Returns:
        (B, N, length) profiles, same dtype as ``centres``.
    """
    pixels = torch.arange(length, dtype=centres.dtype, device=centres.device)
    offsets = pixels - centres[..., None]
    return torch.exp(-(offsets**2) / (2 * sigmas[:, None, None] ** 2))


def normalize_min_max(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (..., H, W) map to [0, 1] in place; a constant map (no fixations) becomes zeros."""
    low, high = maps.amin(dim=(-2, -1)), maps.amax(dim=(-2, -1))  # 3x faster than aminmax on CPU
    span = high - low
    span = torch.where(span > 0, span, torch.inf)  # constant map: (m - low) / inf = 0
    return maps.sub_(low[..., None, None]).div_(span[..., None, None])


def _sigmas(records: Sequence[FixationRecord], sigma: float | None) -> list[float]:
    return [screen_fit_sigma(r.width, r.height) if sigma is None else float(sigma) for r in records]


def _render_batch(
    records: Sequence[FixationRecord],
    size: tuple[int, int],
    sigma: float | None,
    weighted: bool,
    device: torch.device | str,
) -> torch.Tensor:
    """Render records of one image size into (B, H, W) maps at ``size`` = (H, W)."""
    out_h, out_w = size
    longest = max(1, max(len(r) for r in records))
    x = torch.zeros(len(records), longest, dtype=torch.float64)
    y = torch.zeros_like(x)
    weights = torch.zeros_like(x)  # zero weight pads the shorter records
    for b, record in enumerate(records):
        n = len(record)
        x[b, :n] = torch.from_numpy(np.asarray(record.x, dtype=np.float64))
        y[b, :n] = torch.from_numpy(np.asarray(record.y, dtype=np.float64))
        weights[b, :n] = torch.from_numpy(np.asarray(record.duration, dtype=np.float64)) if weighted else 1.0
    width, height = records[0].width, records[0].height
    scale_x, scale_y = out_w / width, out_h / height
    sigmas = torch.tensor(_sigmas(records, sigma), dtype=torch.float64)
    # Pixel k covers [k, k+1): its centre k + 0.5 maps to (k + 0.5) * scale - 0.5.
    x, y = (x + 0.5) * scale_x - 0.5, (y + 0.5) * scale_y - 0.5
    dtype = torch.float32
    profiles_x = gaussian_profiles(x.to(device, dtype), out_w, (sigmas * scale_x).to(device, dtype))
    profiles_y = gaussian_profiles(y.to(device, dtype), out_h, (sigmas * scale_y).to(device, dtype))
    maps = torch.bmm((profiles_y * weights.to(device, dtype)[..., None]).transpose(1, 2), profiles_x)
    return normalize_min_max(maps)


def iter_heatmaps(
    records: Sequence[FixationRecord],
    sigma: float | None = None,
    size: tuple[int, int] | None = None,
    weighted: bool = True,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[FixationRecord, torch.Tensor]]:
    """Yield ``(record, map)`` for every record, rendering images of one size in batches.

    Memory stays at one batch of maps, so all 11,788 CUB-GHA images stream through.

    Args:
        records: fixations in image pixels (one record per map; see ``merge_by_image``).
        sigma: Gaussian sd in original-image pixels; None uses :func:`screen_fit_sigma`.
        size: (H, W) of the maps; None renders at each record's original size.
        weighted: weight each Gaussian by the fixation duration (ms); else by 1.
        batch_size: maps rendered per batched matrix product.
        device: where to compute; maps are returned on that device.

    Yields:
        The record and its (H, W) float32 map in [0, 1], grouped by image size.
    """
    groups: dict[tuple[int, int], list[FixationRecord]] = defaultdict(list)
    for record in records:
        groups[(record.height, record.width)].append(record)
    for shape, group in groups.items():
        group.sort(key=len)  # similar fixation counts per batch: little zero padding
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            maps = _render_batch(chunk, size or shape, sigma, weighted, device)
            yield from zip(chunk, maps)


def render_heatmaps(records: Sequence[FixationRecord], **kwargs) -> list[torch.Tensor]:
    """Render one map per record, in input order (keyword arguments of :func:`iter_heatmaps`)."""
    records = list(records)  # iterated twice below: a generator would give no maps
    by_identity = {id(record): heatmap for record, heatmap in iter_heatmaps(records, **kwargs)}
    return [by_identity[id(record)] for record in records]


def render_heatmap(record: FixationRecord, **kwargs) -> torch.Tensor:
    """Render the (H, W) map of one record (keyword arguments of :func:`iter_heatmaps`)."""
    return render_heatmaps([record], **kwargs)[0]


def render_single_fixation_maps(
    record: FixationRecord,
    sigma: float | None = None,
    size: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """One unweighted, min-max normalised map per fixation (single-fixation mode).

    Each map is the outer product of its two 1-D profiles, so its minimum and maximum are
    the products of the profiles' (all factors are >= 0): no reduction over the maps.

    Returns:
        (N, H, W) float32 maps in [0, 1], in fixation order.
    """
    height, width = size or (record.height, record.width)
    if len(record) == 0:
        return torch.zeros(0, height, width, device=device)
    scale_x, scale_y = width / record.width, height / record.height
    sd = screen_fit_sigma(record.width, record.height) if sigma is None else float(sigma)
    x = (torch.from_numpy(np.asarray(record.x, dtype=np.float64)) + 0.5) * scale_x - 0.5
    y = (torch.from_numpy(np.asarray(record.y, dtype=np.float64)) + 0.5) * scale_y - 0.5
    sds = torch.tensor([sd], dtype=torch.float64)
    profiles_x = gaussian_profiles(x[None].to(device, torch.float32), width, (sds * scale_x).to(device, torch.float32))[0]
    profiles_y = gaussian_profiles(y[None].to(device, torch.float32), height, (sds * scale_y).to(device, torch.float32))[0]
    low = profiles_y.amin(1) * profiles_x.amin(1)
    span = profiles_y.amax(1) * profiles_x.amax(1) - low
    span = torch.where(span > 0, span, torch.inf)
    maps = profiles_y[:, :, None] * profiles_x[:, None, :]  # (N, H, W)
    return maps.sub_(low[:, None, None]).div_(span[:, None, None])


def opencv_gaussian_sigma(ksize: int) -> float:
    """The sd ``cv2.GaussianBlur(ksize, sigma=0)`` uses: 0.3 * ((ksize - 1) / 2 - 1) + 0.8 (501 -> 75.5)."""
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def _reflected_gaussian_profiles(dots: np.ndarray, pixels: np.ndarray, length: int, sigma: float,
                                 radius: float) -> np.ndarray:
    """One axis of a Gaussian blur of unit dots with OpenCV's default border (BORDER_REFLECT_101).

    Pixel p of the blurred axis sums K(j) over the taps j with reflect101(p + j) = dot, i.e.
    the dot itself, its mirror -dot across pixel 0 and 2 (length - 1) - dot across the last
    pixel; K(j) = exp(-j^2 / (2 sigma^2)) for |j| <= radius, else 0 (unnormalised).

    Args:
        dots: (N,) integer dot positions in 0..length-1.
        pixels: (P,) positions to evaluate (outside 0..length-1: 0, the zero padding).
        length: pixels along the axis.
        sigma, radius: kernel sd and half-width, px.

    Returns:
        (N, P) float64 profiles.
    """
    last = length - 1
    images = np.stack([dots, -dots, 2 * last - dots]).astype(np.float64)  # (3, N)
    valid = np.stack([np.ones_like(dots, bool), dots > 0, dots < last])  # a mirror of an edge dot is itself
    taps = pixels[None, None, :] - images[..., None]  # (3, N, P)
    kernel = np.where(np.abs(taps) <= radius, np.exp(-(taps**2) / (2 * sigma**2)), 0.0)
    profiles = (kernel * valid[..., None]).sum(axis=0)
    return np.where((pixels >= 0) & (pixels <= last), profiles, 0.0)


def sample_blurred_dots(
    record: FixationRecord,
    rows: np.ndarray,
    cols: np.ndarray,
    sigma: float,
    radius: float,
    weighted: bool = False,
) -> np.ndarray:
    """A Gaussian-blurred dot image of the fixations, evaluated only at the given pixels.

    The dot image has ``+1`` (or the duration, ``weighted``) at each fixation's integer
    pixel; it is blurred as ``cv2.GaussianBlur`` does (separable kernel of half-width
    ``radius``, reflect-101 borders; GG-CAM's Blur500 is ksize 501: sigma 75.5, radius 250,
    cxr.md §3.1). Rows and columns outside the image are the zero padding around it.

    Args:
        record: fixations in image pixels.
        rows, cols: (R,) and (C,) image rows and columns to evaluate (any integers).
        sigma, radius: kernel sd and half-width in image pixels.
        weighted: weight each dot by its duration instead of 1.

    Returns:
        (R, C) float64 values, up to the kernel's normalisation constant.
    """
    x = np.clip(np.floor(np.asarray(record.x, dtype=np.float64)), 0, record.width - 1)
    y = np.clip(np.floor(np.asarray(record.y, dtype=np.float64)), 0, record.height - 1)
    weights = np.asarray(record.duration, dtype=np.float64) if weighted else np.ones(len(x))
    profiles_y = _reflected_gaussian_profiles(y, np.asarray(rows), record.height, sigma, radius)
    profiles_x = _reflected_gaussian_profiles(x, np.asarray(cols), record.width, sigma, radius)
    return (profiles_y * weights[:, None]).T @ profiles_x


def drop_last_fixation(record: FixationRecord) -> FixationRecord:
    """The published parser's defect: skip the last (x, y, ms) triple of a line (``--compat``).

    Apply to records read from a file, before :func:`gaze.attention.fixations.merge_by_image`.
    """
    return record.subset(slice(0, max(len(record) - 1, 0)))


#: The published script's screen-edge handling (PyGaze ``draw_heatmap``, from which its
#: renderer descends; cub_pim.md §1.10 step 3): a fixation whose integer screen coordinate
#: is negative on an axis has that coordinate set to 0 and its kernel cut by ``-g``; the
#: cut kernel no longer matches the 500 px canvas slice, so numpy raises and the
#: try/except drops the fixation, except at ``g = -499``, where the one remaining kernel
#: column (row) broadcasts over the whole 500 px slice.
PUBLISHED_BROADCAST_OFFSET = -(DISPLAY_WINDOW - 1)


def _display_profiles(centres: np.ndarray, start: int, length: int) -> np.ndarray:
    """Truncated published Gaussian along one screen axis, for pixels start..start+length-1."""
    offsets = np.arange(start, start + length)[None, :] - centres[:, None]
    inside = (offsets >= -DISPLAY_WINDOW_CENTRE) & (offsets < DISPLAY_WINDOW - DISPLAY_WINDOW_CENTRE)
    return np.where(inside, np.exp(-(offsets**2) / (2 * DISPLAY_SIGMA**2)), 0.0)


def _published_profiles(centres: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """What the published ``heatmap[g:g + adj, ...] += gaus[...] * d`` adds along one axis.

    The canvas is the screen padded by 250 px on each side; the kernel's slice starts at
    canvas index ``g`` (the screen coordinate, the padding cancelling the kernel centre):

    * ``g >= 0``: the whole kernel, centred on the screen pixel g; past the right/bottom
      edge (g > 1920 / 1080) the published code shortens kernel and slice alike to end at
      the canvas border, so the part on the screen is unchanged (clipped, not dropped);
    * ``g = -499``: g is set to 0 and the single kernel column ``G[:, 499]`` broadcasts over
      canvas 0..499, i.e. screen pixels 0..249 all get the value at offset +249;
    * any other ``g < 0``: g is set to 0, the kernel shrinks to ``500 + g`` and the add
      raises a shape mismatch: the fixation is dropped (no wrap-around).

    Args:
        centres: (N,) integer screen coordinates (the published ``int(x)``).
        start, length: the screen pixels to evaluate, start..start+length-1.

    Returns:
        (N, length) profiles and (N,) bool, False where the fixation is dropped.
    """
    profiles = _display_profiles(centres.astype(np.float64), start, length)
    pixels = np.arange(start, start + length)
    edge_value = math.exp(-((DISPLAY_WINDOW - 1 - DISPLAY_WINDOW_CENTRE) ** 2) / (2 * DISPLAY_SIGMA**2))
    broadcast = centres == PUBLISHED_BROADCAST_OFFSET
    profiles[broadcast] = np.where(pixels < DISPLAY_WINDOW - DISPLAY_WINDOW_CENTRE, edge_value, 0.0)
    return profiles, (centres >= 0) | broadcast


def render_display_heatmap(record: FixationRecord, compat: bool = False) -> torch.Tensor:
    """Render a display-layout record with the published CUB-GHA recipe (cub_pim.md §1.10).

    Each fixation at integer screen position (gx, gy) adds ``d * G`` where G is the 500x500
    window of sd 75 px with its centre at index 250. The screen map is cut to the displayed
    rectangle, min-max normalised, scaled by 255 into a PIL 'F' image, converted to 'L' and
    resized to the original size with PIL's default filter, as the published script does.

    Args:
        record: a record from the display layout (``record.display`` is set).
        compat: reproduce the published script's screen-edge arithmetic too (see
            :func:`_published_profiles`): fixations with a negative screen coordinate are
            dropped (at exactly -499 px one kernel column broadcasts instead), those past the
            right or bottom edge are kept, clipped at the canvas. The default keeps every
            fixation where it is, its window's tail lighting the image from off the screen.
            Drop the last fixation of each line with :func:`drop_last_fixation` before
            merging to reproduce the parser defect; together the two give the published
            8-bit maps bit for bit.

    Returns:
        (H, W) float32 map in [0, 1] (multiples of 1/255) at the original image size.
    """
    if record.display is None or record.display_x is None:
        raise ValueError(
            f"image {record.image_id}: no display geometry; render image-layout records "
            "with render_heatmaps"
        )
    rect = record.display
    gx = np.asarray(record.display_x).astype(np.int64)  # the published script slices with int()
    gy = np.asarray(record.display_y).astype(np.int64)
    durations = np.asarray(record.duration, dtype=np.float64)
    # The displayed rectangle, cut to the screen as the published slicing does.
    left, top = max(rect.x0, 0), max(rect.y0, 0)
    right = min(rect.x0 + rect.width, SCREEN_WIDTH)
    bottom = min(rect.y0 + rect.height, SCREEN_HEIGHT)
    if compat:
        profiles_x, kept_x = _published_profiles(gx, left, right - left)
        profiles_y, kept_y = _published_profiles(gy, top, bottom - top)
        durations = np.where(kept_x & kept_y, durations, 0.0)
    else:
        profiles_x = _display_profiles(gx.astype(np.float64), left, right - left)
        profiles_y = _display_profiles(gy.astype(np.float64), top, bottom - top)
    crop = (profiles_y * durations[:, None]).T @ profiles_x
    span = crop.max() - crop.min() if crop.size else 0.0
    crop = (crop - crop.min()) / span if span > 0 else np.zeros_like(crop)
    grey = Image.fromarray((crop * 255).astype(np.float32), mode="F").convert("L")
    resized = grey.resize((record.width, record.height))
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)


def heatmap_to_uint8(heatmap: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H, W) map in [0, 1] -> 8-bit grey array: x255 in float32, rounded half to even, clipped."""
    values = heatmap.detach().cpu().numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    levels = np.multiply(values, np.float32(255.0), dtype=np.float32)  # in place below: no temporaries
    np.rint(levels, out=levels)
    np.clip(levels, 0, 255, out=levels)
    return levels.astype(np.uint8)


def encode_heatmap(heatmap: torch.Tensor | np.ndarray, file_format: str = "JPEG", quality: int = 75) -> bytes:
    """A map as the bytes of an 8-bit grey JPEG (``quality``) or PNG file.

    ``quality`` 75 is PIL's default, which the published CUB-GHA JPEGs were saved with.
    """
    buffer = io.BytesIO()
    image = Image.fromarray(heatmap_to_uint8(heatmap))  # (H, W) uint8 -> mode L
    if file_format.upper() == "PNG":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def save_heatmap(path: str | os.PathLike, heatmap: torch.Tensor | np.ndarray, quality: int = 75) -> None:
    """Write a map as an 8-bit grey image (JPEG, or PNG by the ``.png`` suffix), atomically."""
    is_png = os.path.splitext(str(path))[1].lower() == ".png"
    atomic_write_bytes(path, encode_heatmap(heatmap, "PNG" if is_png else "JPEG", quality))


def load_heatmap(path: str | os.PathLike, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an 8-bit grey heatmap file as an (H, W) float32 tensor in [0, 1].

    Args:
        path: a grey (or RGB, converted with PIL's luma) JPEG/PNG.
        size: optional (H, W) to resize to (bilinear).

    Raises:
        FileNotFoundError: no file at ``path``.
        HeatmapFileError: an empty, truncated or undecodable file (the message names it).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: attention map not found")
    try:
        with Image.open(path) as image:
            grey = image.convert("L")  # decodes the whole file: a truncated one raises here
    except (OSError, SyntaxError, ValueError) as error:
        raise HeatmapFileError(f"{path}: cannot read the attention map ({error}); is it truncated? "
                               "Rebuild it (generate_heatmap.py --overwrite)") from None
    if size is not None and grey.size != (size[1], size[0]):
        grey = grey.resize((size[1], size[0]), Image.BILINEAR)
    return torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)

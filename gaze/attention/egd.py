"""EGD-CXR (CXR-Eye) file formats: master_sheet.csv, fixations.csv -> FixationRecords, fixation_heatmaps PNGs.

The PhysioNet ``egd-cxr/1.0.0`` release (spec cxr.md §1) ships:

* ``master_sheet.csv`` (cxr.md §1.1): one row per chest X-ray, the one-hot labels
  ``Normal, CHF, pneumonia`` and the screen padding the image was shown with;
  :func:`read_master_sheet` checks it and adds normalised columns.
* ``fixations.csv`` (cxr.md §1.2): one row per fixation, as a fraction of the 1920x1080
  screen. :func:`screen_to_image` is the published screen->image mapping (cxr.md §1.3), and
  :func:`read_egd_fixations` turns the file into one :class:`~gaze.attention.fixations.FixationRecord`
  per image, dropping (never prefix-matching) the calibration images (cxr.md §1, §5, §6.2).
* ``fixation_heatmaps/<dicom_id>/heatmap.png`` (cxr.md §1.4): viridis pictures written by
  ``plt.imsave``. :func:`egd_heatmap` renders the same recipe from fixations (cxr.md §6.1);
  :func:`read_heatmap_png` decodes the PNGs through the viridis colour table, or as the
  published code reads them (grey luma, about 0.12 background and 0.85 peak).

Errors raise :class:`EgdFormatError` naming ``file:line`` (header = line 1, first data row =
line 2; a quoted field spanning lines would shift the count) or the column.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from gaze.attention.fixations import FixationRecord
from gaze.attention.heatmap import render_heatmap
from gaze.safe_paths import check_plain_name, check_relative_path

#: The three exclusive classes, one-hot in master_sheet.csv; label = index here (cxr.md §1).
CLASS_NAMES = ("Normal", "CHF", "pneumonia")
#: (width, height) of the screen the radiologist read on, in pixels (cxr.md §1).
SCREEN_SIZE = (1920, 1080)
#: sd of the published heatmap Gaussian, in original (DICOM) image pixels (cxr.md §1.4).
EGD_SIGMA = 150.0
#: The padding columns, in the order (top, bottom, left, right): the release's spelling and
#: the one of ``image_preparation.py`` and the mapping script (cxr.md §1.1, inconsistent).
PAD_SPELLINGS = (
    ("image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad"),
    ("image_top", "image_bottom", "image_left", "image_right"),
)
PAD_COLUMNS = ("pad_top", "pad_bottom", "pad_left", "pad_right")
#: Largest RGB distance (uint8 units) from a pixel to the viridis table still decoded; the
#: table's neighbours are <= 3.8 apart, a grey pixel is >= 55 away from every entry.
VIRIDIS_MAX_DISTANCE = 16.0
#: Image modes that hold no colour: not a plt.imsave viridis picture.
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")


class EgdFormatError(ValueError):
    """An EGD-CXR file that does not follow its format; the message names file:line or column."""


def _line(index: int) -> int:
    """CSV line of the data row at 0-based position ``index`` (header = line 1)."""
    return int(index) + 2


def _read_csv(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a CSV as strings with one row per line (blank lines dropped, index = data row).

    Blank lines are kept while reading so the index stays the line number minus 2, then
    dropped: a row whose read columns are all empty counts as blank.
    """
    frame = pd.read_csv(path, dtype=str, skip_blank_lines=False, usecols=columns)
    return frame.dropna(how="all")


def _header(path: Path) -> list[str]:
    """Column names of a CSV file (its first line)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except pd.errors.EmptyDataError:
        raise EgdFormatError(f"{path}: empty file, expected a CSV header on line 1") from None


def _require(path: Path, found: Sequence[str], required: Sequence[str]) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        raise EgdFormatError(f"{path}: missing column(s) {missing}; found {list(found)}")


def _numbers(path: Path, frame: pd.DataFrame, column: str) -> np.ndarray:
    """(N,) float64 values of a column; a non-numeric or empty cell raises with file:line."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        k = bad[0]
        raise EgdFormatError(
            f"{path}:{_line(frame.index[k])}: column {column} = {frame[column].iloc[k]!r}, "
            f"expected a number ({bad.size} bad row(s) in all)"
        )
    return values


def _pad_spelling(path: Path, found: Sequence[str]) -> tuple[str, ...]:
    """The padding columns the sheet uses (either spelling of cxr.md §1.1)."""
    for spelling in PAD_SPELLINGS:
        if all(c in found for c in spelling):
            return spelling
    missing = [c for c in PAD_SPELLINGS[0] if c not in found]
    raise EgdFormatError(
        f"{path}: missing padding column(s) {missing} (or {list(PAD_SPELLINGS[1])}); "
        f"found {list(found)}"
    )


def read_master_sheet(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check ``master_sheet.csv`` (cxr.md §1.1).

    Args:
        path: the release's master_sheet.csv.

    Returns:
        The original columns (as read by pandas) with these replaced or added:
        ``dicom_id`` (stripped, lower case), ``patient_id`` (str), ``pad_top``,
        ``pad_bottom``, ``pad_left``, ``pad_right`` (int screen pixels, from
        ``image_*_pad`` or ``image_*``) and ``label`` (int 0/1/2: the index of the hot
        column in :data:`CLASS_NAMES`). One row per image, in file order.

    Raises:
        FileNotFoundError: no file at ``path``.
        EgdFormatError: missing columns, an empty or duplicate dicom_id, a label row that is
            not exactly one-hot, or a padding that is not a whole number >= 0.
        UnsafeNameError: a dicom_id that is not a plain file name, or a ``path`` leaving the
            MIMIC-CXR folder (absolute or with ``..``).
    """
    path = Path(path)
    found = _header(path)
    _require(path, found, ["dicom_id", "path", "patient_id", *CLASS_NAMES])
    spelling = _pad_spelling(path, found)
    text = _read_csv(path)
    sheet = pd.read_csv(path, dtype={"dicom_id": str, "patient_id": str, "path": str})
    sheet = sheet.dropna(how="all").reset_index(drop=True)  # the rows of ``text``, native dtypes

    ids = text["dicom_id"].fillna("").str.strip().str.lower()
    empty = np.flatnonzero((ids == "").to_numpy())
    if empty.size:
        raise EgdFormatError(f"{path}:{_line(ids.index[empty[0]])}: empty dicom_id")
    for index, dicom_id in ids.items():  # ids name heatmap folders, cache files and panels
        check_plain_name(dicom_id, f"{path}:{_line(index)}: dicom_id")
    for index, relative in text["path"].fillna("").items():
        check_relative_path(str(relative).strip(), f"{path}:{_line(index)}: path")
    repeated = ids[ids.duplicated(keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        lines = [_line(i) for i in repeated.index[repeated == first]]
        raise EgdFormatError(f"{path}: dicom_id {first} appears on lines {lines}; expected once")

    onehot = np.stack([pd.to_numeric(text[c], errors="coerce").to_numpy(np.float64) for c in CLASS_NAMES], 1)
    valid = np.isin(onehot, (0.0, 1.0)).all(1) & (onehot.sum(1) == 1)
    if not valid.all():
        k = np.flatnonzero(~valid)[0]
        cells = ", ".join(f"{c}={text[c].iloc[k]!r}" for c in CLASS_NAMES)
        raise EgdFormatError(
            f"{path}:{_line(text.index[k])}: labels {cells}; expected exactly one of "
            f"{list(CLASS_NAMES)} equal to 1 and the others 0"
        )

    pads = {}
    for name, column in zip(PAD_COLUMNS, spelling):
        values = pd.to_numeric(text[column], errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~(np.isfinite(values) & (values >= 0) & (values == np.floor(values))))
        if bad.size:
            k = bad[0]
            raise EgdFormatError(
                f"{path}:{_line(text.index[k])}: column {column} = {text[column].iloc[k]!r}, "
                "expected a whole number of screen pixels >= 0"
            )
        pads[name] = values.astype(np.int64)

    sheet = sheet.assign(
        dicom_id=ids.to_numpy(),
        patient_id=text["patient_id"].fillna("").str.strip().to_numpy(),
        **pads,
        label=onehot.argmax(1).astype(np.int64),
    )
    return sheet


def screen_to_image(
    fpogx: np.ndarray,
    fpogy: np.ndarray,
    pad_top: np.ndarray | int,
    pad_bottom: np.ndarray | int,
    pad_left: np.ndarray | int,
    pad_right: np.ndarray | int,
    width: np.ndarray | int,
    height: np.ndarray | int,
    offset: tuple[float, float] = (0.0, 0.0),
    screen: tuple[int, int] = SCREEN_SIZE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map gaze points from screen fractions to image pixels, as the published script (cxr.md §1.3).

    ``ex = fpogx * 1920 + offset_x``, ``ey = fpogy * 1080 + offset_y``. A point is inside iff
    ``left < ex < 1920 - right`` and ``top < ey < 1080 - bottom`` (strict). Then, with the
    image size first padded up to even numbers ``W_even``, ``H_even``:
    ``x = int((ex - left) * W_even / (1920 - left - right))`` and likewise y (truncation, as
    Python ``int()``; same operation order, so the same float64 results).

    Deviation: ``x == W`` (reachable only for odd W, as W_even = W + 1) is clipped to W - 1,
    likewise y; the published code would index past the image.

    Args:
        fpogx, fpogy: gaze point as a fraction of the screen width/height, origin top-left.
        pad_top, pad_bottom, pad_left, pad_right: screen padding around the shown image, px.
        width, height: original (DICOM) image size in pixels.
        offset: (x, y) calibration offset in screen pixels (cxr.md §1.3 step 1).
        screen: (width, height) of the screen in pixels.
        All array arguments broadcast against each other.

    Returns:
        ``(x, y, inside)``: int64 pixel column and row (-1 where outside) and the bool mask,
        all of the broadcast shape.
    """
    screen_w, screen_h = screen
    fx, fy, top, bottom, left, right, w, h = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (fpogx, fpogy, pad_top, pad_bottom, pad_left, pad_right)),
        np.asarray(width, dtype=np.int64),
        np.asarray(height, dtype=np.int64),
    )
    ex = fx * screen_w + offset[0]
    ey = fy * screen_h + offset[1]
    inside = (left < ex) & (ex < screen_w - right) & (top < ey) & (ey < screen_h - bottom)
    w_even, h_even = w + w % 2, h + h % 2
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.trunc((ex - left) * w_even / (screen_w - left - right))
        y = np.trunc((ey - top) * h_even / (screen_h - top - bottom))
    # -1 outside; x == W (odd W only) clipped to W - 1 (documented deviation).
    x = np.minimum(np.where(inside, x, -1), w - 1).astype(np.int64)
    y = np.minimum(np.where(inside, y, -1), h - 1).astype(np.int64)
    return x, y, inside


@dataclass
class EgdGaze:
    """Fixations of fixations.csv per image, and where every other row went.

    Every row read is counted in exactly one of ``calibration_rows``, ``unmatched_rows``,
    ``invalid_rows``, ``outside_rows`` or the kept fixations in ``records``.

    Attributes:
        records: one record per image with at least one fixation inside it, keyed by
            lower-case dicom_id, in order of first appearance in the file.
        rows: data rows read.
        calibration_rows: rows of images absent from the master sheet: the calibration
            images, named as a dicom_id minus its last 5 characters (cxr.md §1, §5). Dropped.
        calibration_ids: sorted lower-case ids of those images.
        outside_rows: fixations that map outside the image (cxr.md §1.3).
        unmatched_rows: rows of master-sheet images with no entry in ``image_sizes``.
        invalid_rows: rows with FPOGV == 0 (counted only when reading with valid_only=True).
        missing_ids: sorted master-sheet ids with a known size but no fixation in ``records``.
        offset: (x, y) calibration offset applied, screen pixels; (0, 0) when off.
        path: the file read.
    """

    records: dict[str, FixationRecord]
    rows: int = 0
    calibration_rows: int = 0
    calibration_ids: list[str] = field(default_factory=list)
    outside_rows: int = 0
    unmatched_rows: int = 0
    invalid_rows: int = 0
    missing_ids: list[str] = field(default_factory=list)
    offset: tuple[float, float] = (0.0, 0.0)
    path: str = ""

    @property
    def num_fixations(self) -> int:
        return sum(len(r) for r in self.records.values())

    def summary(self) -> str:
        """One paragraph: what was read, what was kept and what was dropped, and why."""
        calibration = (
            f"offset ({self.offset[0]:+.1f}, {self.offset[1]:+.1f}) screen px applied"
            if self.offset != (0.0, 0.0)
            else "no calibration offset"
        )
        return (
            f"{self.path or 'fixations.csv'}: {self.rows} rows; kept {self.num_fixations} "
            f"fixations on {len(self.records)} images ({calibration}). Dropped "
            f"{self.calibration_rows} rows of {len(self.calibration_ids)} calibration images "
            f"(ids absent from the master sheet), {self.outside_rows} fixations outside the image, "
            f"{self.unmatched_rows} rows of images without a known size and {self.invalid_rows} "
            f"invalid rows (FPOGV = 0). {len(self.missing_ids)} master-sheet images with a known "
            "size have no fixation."
        )


def _normalise_sizes(image_sizes: Mapping[str, tuple[int, int]]) -> pd.DataFrame:
    """(width, height) per lower-case id, as a frame indexed by id."""
    ids = [str(k).strip().lower() for k in image_sizes]
    sizes = np.asarray(list(image_sizes.values()), dtype=np.int64).reshape(-1, 2)
    frame = pd.DataFrame({"width": sizes[:, 0], "height": sizes[:, 1]}, index=pd.Index(ids, dtype=object))
    return frame[~frame.index.duplicated(keep="last")]


def _calibration_offset(path: Path, ids: pd.Series, fx: np.ndarray, fy: np.ndarray, screen: tuple[int, int]) -> tuple[float, float]:
    """Screen centre minus the mean last gaze sample of each calibration image (cxr.md §1.3 step 1)."""
    if len(ids) == 0:
        raise EgdFormatError(f"{path}: calibrate=True but the file has no calibration rows")
    last = pd.DataFrame({"id": ids.to_numpy(), "x": fx, "y": fy}).groupby("id", sort=False).last()
    screen_w, screen_h = screen
    return (
        float(screen_w / 2 - (last["x"].to_numpy() * screen_w).mean()),
        float(screen_h / 2 - (last["y"].to_numpy() * screen_h).mean()),
    )


def read_egd_fixations(
    path: str | os.PathLike,
    master: pd.DataFrame,
    image_sizes: Mapping[str, tuple[int, int]],
    calibrate: bool = False,
    valid_only: bool = False,
) -> EgdGaze:
    """Read ``fixations.csv`` into one FixationRecord per image (cxr.md §1.2, §1.3).

    Rows are matched to the master sheet by lower-case DICOM_ID (the file writes them in
    upper case). Ids absent from the sheet are calibration images: dropped and counted,
    never prefix-matched to a real image (cxr.md §5). Positions go through
    :func:`screen_to_image`; fixations outside the image are dropped and counted. Every
    fixation inside is kept, row 0 included (the published heatmap script counts only y > 0).

    Args:
        path: fixations.csv; columns DICOM_ID, FPOGX, FPOGY, FPOGD needed, SESSION_ID
            optional (FPOGV needed with valid_only); others ignored.
        master: the frame of :func:`read_master_sheet` (dicom_id and pad_* columns).
        image_sizes: dicom_id -> (width, height) of the image in pixels (MIMIC-CXR-JPG
            images have the DICOM resolution).
        calibrate: shift every point by the screen centre minus the mean last sample of the
            calibration images (cxr.md §1.3 step 1); off by default, as in the published code.
        valid_only: drop (and count) rows with FPOGV == 0.

    Returns:
        :class:`EgdGaze`. Each record has x, y in image pixels (integers, as float64),
        duration = FPOGD * 1000 ms, run = SESSION_ID index in order of appearance (-1 when
        the column is absent), fixations in file order, source ``("<file>:<first>-<last>",)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        EgdFormatError: missing columns, an empty DICOM_ID or a non-numeric needed value.
    """
    path = Path(path)
    found = _header(path)
    needed = ["DICOM_ID", "FPOGX", "FPOGY", "FPOGD"] + (["FPOGV"] if valid_only else [])
    _require(path, found, needed)
    columns = needed + (["SESSION_ID"] if "SESSION_ID" in found else [])
    frame = _read_csv(path, columns)
    ids = frame["DICOM_ID"].fillna("").str.strip().str.lower()
    empty = np.flatnonzero((ids == "").to_numpy())
    if empty.size:
        raise EgdFormatError(f"{path}:{_line(frame.index[empty[0]])}: column DICOM_ID is empty")
    fx, fy, seconds = (_numbers(path, frame, c) for c in ("FPOGX", "FPOGY", "FPOGD"))
    runs = pd.factorize(frame["SESSION_ID"])[0] if "SESSION_ID" in frame else np.full(len(frame), -1)
    lines = frame.index.to_numpy() + 2

    sheet = master.set_index("dicom_id")
    in_master = ids.isin(sheet.index).to_numpy()
    offset = (0.0, 0.0)
    if calibrate:
        offset = _calibration_offset(path, ids[~in_master], fx[~in_master], fy[~in_master], SCREEN_SIZE)
    sizes = _normalise_sizes(image_sizes)
    sized = in_master & ids.isin(sizes.index).to_numpy()
    valid = np.ones(len(frame), dtype=bool)
    if valid_only:
        valid = _numbers(path, frame, "FPOGV") != 0
    candidate = sized & valid

    keep_ids = ids[candidate]
    pads = sheet.loc[keep_ids.to_numpy(), list(PAD_COLUMNS)].to_numpy(np.int64)  # (M, 4)
    wh = sizes.loc[keep_ids.to_numpy(), ["width", "height"]].to_numpy(np.int64)  # (M, 2)
    x, y, inside = screen_to_image(
        fx[candidate], fy[candidate], *pads.T, wh[:, 0], wh[:, 1], offset=offset
    )

    kept_ids = keep_ids.to_numpy()[inside]
    records = _build_records(
        path,
        kept_ids,
        wh[inside],
        x[inside].astype(np.float64),
        y[inside].astype(np.float64),
        seconds[candidate][inside] * 1000.0,
        np.asarray(runs, dtype=np.int64)[candidate][inside],
        lines[candidate][inside],
    )
    sized_master = sheet.index[sheet.index.isin(sizes.index)]
    return EgdGaze(
        records=records,
        rows=len(frame),
        calibration_rows=int((~in_master).sum()),
        calibration_ids=sorted(set(ids[~in_master])),
        outside_rows=int((~inside).sum()),
        unmatched_rows=int((in_master & ~sized).sum()),
        invalid_rows=int((sized & ~valid).sum()),
        missing_ids=sorted(set(sized_master) - set(records)),
        offset=offset,
        path=str(path),
    )


def _build_records(
    path: Path,
    ids: np.ndarray,
    sizes: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    duration: np.ndarray,
    run: np.ndarray,
    lines: np.ndarray,
) -> dict[str, FixationRecord]:
    """Group kept fixations (file order) by image: one record per id, first appearance first."""
    codes, uniques = pd.factorize(ids)
    order = np.argsort(codes, kind="stable")  # file order kept within each image
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(uniques)))])
    records = {}
    for k, image_id in enumerate(uniques):
        part = order[bounds[k] : bounds[k + 1]]
        records[str(image_id)] = FixationRecord(
            image_id=str(image_id),
            width=int(sizes[part[0], 0]),
            height=int(sizes[part[0], 1]),
            x=x[part],
            y=y[part],
            duration=duration[part],
            run=run[part],
            source=(f"{path}:{lines[part].min()}-{lines[part].max()}",),
        )
    return records


def egd_heatmap(
    record: FixationRecord,
    sigma: float = EGD_SIGMA,
    size: tuple[int, int] | None = None,
    duration_weighted: bool = False,
) -> torch.Tensor:
    """The dataset's own static heatmap of one image (cxr.md §1.4, §6.1).

    +1 per fixation (duration ignored unless ``duration_weighted``), a Gaussian of sd
    ``sigma`` original-image pixels, min-max normalised to [0, 1]. The published script
    applies ``scipy.ndimage.gaussian_filter`` (mode='reflect', truncate=4) to the count
    image; this renders the exact sum of Gaussians, which equals gaussian_filter with
    mode='constant' and no truncation: no mass is reflected back at the image border.

    Args:
        record: fixations in image pixels (from :func:`read_egd_fixations`).
        sigma: Gaussian sd in original-image pixels (cxr.md §1.4: 150).
        size: (H, W) to render at directly; None renders at the original size.
        duration_weighted: weight each fixation by its duration instead of 1.

    Returns:
        (H, W) float32 tensor in [0, 1].
    """
    return render_heatmap(record, sigma=sigma, size=size, weighted=duration_weighted)


@functools.lru_cache(maxsize=1)
def _viridis_table():
    """KD-tree over the distinct colours of matplotlib's 256-entry viridis table (uint8 RGB,
    as ``plt.imsave`` writes it) and the level of each: the mean index of the entries sharing
    it (entries 104/105 and 137/138 coincide in uint8, so they decode to 104.5 and 137.5).
    """
    from matplotlib import colormaps
    from scipy.spatial import cKDTree

    lut = colormaps["viridis"](np.arange(256), bytes=True)[:, :3].astype(np.int32)  # (256, 3)
    packed = (lut[:, 0] << 16) | (lut[:, 1] << 8) | lut[:, 2]
    colours, inverse = np.unique(packed, return_inverse=True)
    levels = np.bincount(inverse, weights=np.arange(256)) / np.bincount(inverse)
    rgb = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], 1)
    return cKDTree(rgb.astype(np.float64)), levels


def _viridis_levels(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W) viridis levels 0..255 of each pixel and the largest colour distance seen."""
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3 or 4) uint8 picture, got {rgb.shape} {rgb.dtype}")
    channels = rgb[..., :3].astype(np.int32)
    packed = (channels[..., 0] << 16) | (channels[..., 1] << 8) | channels[..., 2]
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)  # few distinct colours
    tree, levels = _viridis_table()
    unique_rgb = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], 1)
    distance, nearest = tree.query(unique_rgb.astype(np.float64))
    max_distance = float(distance.max()) if distance.size else 0.0
    return levels[nearest][inverse].reshape(rgb.shape[:2]), max_distance


def decode_viridis(rgb: np.ndarray) -> np.ndarray:
    """Invert ``plt.imsave(..., cmap='viridis')``: colours -> values in [0, 1].

    Each pixel gets the index of the nearest (Euclidean RGB) entry of matplotlib's 256-entry
    viridis table in uint8, divided by 255. Alpha is ignored. Works on the distinct colours
    only (a few hundred), so a 3000x2500 picture takes about a second.

    Args:
        rgb: (H, W, 3 or 4) uint8 picture.

    Returns:
        (H, W) float32 in [0, 1], multiples of 1/255 (of 0.5/255 for two shared colours).
    """
    levels, _ = _viridis_levels(rgb)
    return (levels / 255.0).astype(np.float32)


def read_heatmap_png(path: str | os.PathLike, mode: str = "viridis") -> np.ndarray:
    """Read a ``fixation_heatmaps/<dicom_id>/heatmap.png`` (cxr.md §1.4).

    Args:
        path: the PNG, as written by ``plt.imsave`` (RGBA viridis, DICOM size).
        mode: ``'viridis'`` decodes the colours back to the map (:func:`decode_viridis`),
            the correct reading; ``'luma'`` is the published reading (PIL ``convert('L')``,
            Rec. 601 luma, /255: about 0.12 background and 0.85 peak, cxr.md §1.4), for
            compatibility with HAFC and EGD.

    Returns:
        (H, W) float32 in [0, 1].

    Raises:
        FileNotFoundError: no file at ``path``.
        EgdFormatError: in viridis mode, a grey picture or colours far from viridis.
    """
    from PIL import Image

    path = Path(path)
    if mode not in ("viridis", "luma"):
        raise ValueError(f"mode must be 'viridis' or 'luma', got {mode!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such heatmap PNG")
    with Image.open(path) as image:
        if mode == "luma":
            return np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255.0)
        if image.mode in _GREY_MODES:
            raise EgdFormatError(
                f"{path}: grey image (mode {image.mode}), not a viridis picture; "
                "read it with mode='luma'"
            )
        rgb = np.asarray(image.convert("RGB"))
    levels, max_distance = _viridis_levels(rgb)
    if max_distance > VIRIDIS_MAX_DISTANCE:
        raise EgdFormatError(
            f"{path}: a colour is {max_distance:.1f} RGB units from every viridis entry "
            f"(at most {VIRIDIS_MAX_DISTANCE} expected); not a viridis picture"
        )
    return (levels / 255.0).astype(np.float32)

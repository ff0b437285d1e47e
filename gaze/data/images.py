"""Images and id tables of datasets: RGB loading with clear errors, ``<id> <fields>`` tables.

Nothing here knows a dataset's paths (DESIGN.md §1); ``cub/`` and ``cxr/`` build on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

#: PIL modes holding 16-bit grey values (scaled by 255 / 65535 to 8 bits).
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
#: Bytes at the end of a JPEG searched for the end-of-image marker (trailing junk allowed).
_JPEG_TAIL_BYTES = 4096


class TableFormatError(ValueError):
    """A malformed or inconsistent metadata table; the message names file:line."""


@dataclass
class IdRow:
    """One line of an id table: its 1-based line number and the fields after the id."""

    line: int
    fields: list[str]


def read_id_table(path: str | os.PathLike, num_fields: int, last_is_rest: bool = False) -> dict[int, IdRow]:
    """Read a whitespace-separated ``<int id> ...`` table (CUB ``images.txt`` style) into {id: row}.

    Blank lines are skipped; a wrong field count, a non-integer or repeated id is a
    :class:`TableFormatError` naming file:line.

    Args:
        path: the text file (a missing file is a FileNotFoundError naming it).
        num_fields: fields per line, id included.
        last_is_rest: the last field takes the rest of the line (paths with spaces).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata file not found")
    rows: dict[int, IdRow] = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=num_fields - 1) if last_is_rest else line.split()
        if len(fields) != num_fields:
            raise TableFormatError(f"{path}:{line_no}: expected {num_fields} fields, got {len(fields)}: {line!r}")
        try:
            image_id = int(fields[0])
        except ValueError:
            raise TableFormatError(f"{path}:{line_no}: id {fields[0]!r} is not an integer") from None
        if image_id in rows:
            raise TableFormatError(f"{path}:{line_no}: id {image_id} already on line {rows[image_id].line}")
        rows[image_id] = IdRow(line_no, fields[1:])
    return rows


class ImageLoadError(OSError):
    """An image file that cannot be decoded completely; the message names the file."""


def _check_jpeg_complete(path: Path) -> None:
    """Raise if a JPEG has no end-of-image marker near its end (truncated download)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _JPEG_TAIL_BYTES))
        tail = handle.read()
    if b"\xff\xd9" not in tail:
        raise ImageLoadError(f"{path}: truncated JPEG (no end-of-image marker)")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; 16/32-bit grey is rescaled to 8 bits, alpha is dropped."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode in _SIXTEEN_BIT_MODES:
            scale = 255.0 / 65535.0
        else:  # 'I' (e.g. 16-bit PNG on some PIL versions) and 'F': scale only if out of 8-bit range
            top = float(values.max()) if values.size else 0.0
            scale = 255.0 / (65535.0 if top <= 65535.0 else top) if top > 255.0 else 1.0
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids PIL's palette-transparency warning
    return image.convert("RGB")  # L, LA, 1, P, PA, RGBA, CMYK, YCbCr, ...


def load_rgb_image(path: str | os.PathLike, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image file completely and return it as an 8-bit PIL RGB image.

    Grey ('L', 'LA', '1'), palette ('P', 'PA'), 16-bit grey ('I;16', 'I'), float ('F'),
    RGBA and CMYK images are converted to RGB (alpha dropped; CUB has about a dozen grey
    and CMYK JPEGs). EXIF orientation is **not** applied: gaze coordinates refer to the
    stored pixels, as in the published loaders.

    Truncated files are an error, never silently padded: the pixels are decoded here with
    PIL's default ``LOAD_TRUNCATED_IMAGES = False``; if some other library switched that
    global on, JPEGs are also checked for their end-of-image marker.

    Args:
        path: image file.
        draft_size: (width, height): let the JPEG decoder scale by 1/2, 1/4 or 1/8 in the
            DCT domain while the result stays at least this large (PIL ``draft``); a full
            3056x2544 radiograph then decodes several times faster for a 224 px model.
            Other formats ignore it.

    Returns:
        A loaded (file closed) RGB image.

    Raises:
        FileNotFoundError: the file does not exist (message names it).
        ImageLoadError: the file is not an image, is truncated or cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            if draft_size is not None and image.format == "JPEG":
                image.draft(image.mode, tuple(int(v) for v in draft_size))
            image.load()
            if ImageFile.LOAD_TRUNCATED_IMAGES and image.format == "JPEG":
                _check_jpeg_complete(path)
            return _to_rgb(image)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not a readable image file") from None
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError) as error:  # PIL: "image file is truncated", broken data
        raise ImageLoadError(f"{path}: cannot decode image ({error})") from error

"""Build CUB-GHA: human attention maps of CUB-200-2011 from the eye-tracking fixations.

Keeps the published CLI (yaorong0921/CUB-GHA ``generate_heatmap.py``) so its instructions
still work, and adds the real run files, speed and safety:

    python generate_heatmap.py --gaze_file_path data_5runs --CUB_GHA_save_path CUB_GHA
    python generate_heatmap.py --gaze_file_path Fixation.txt --single_fixation
    python generate_heatmap.py --download            # fetch data_5runs/ first (SHA-256 checked)

Output: ``<save>/All_Fixation/<id>.jpg`` (8-bit grey, original size) or
``<save>/Single_Fixation/<id>/<k>.jpg``; with ``--overlay`` also jet overlays on the CUB
photos in ``<save>/Overlay/``. No CUB images are needed for the maps: image sizes come
from the gaze file. Re-running skips finished images unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gaze.attention.fixations import (
    FixationFormatError,
    ReadLimits,
    list_fixation_files,
    merge_by_image,
    read_fixations,
)
from gaze.attention.gha import (
    ALL_DIR,
    SINGLE_DIR,
    BuildOptions,
    OptionsMismatchError,
    build_gha,
)
from gaze.attention.heatmap import drop_last_fixation, load_heatmap
from gaze.data.images import load_rgb_image, read_id_table
from gaze.viz.plots import overlay_heatmap, save_image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--CUB_dir_path", default="./CUB_200_2011",
                        help="CUB_200_2011 folder: ids are checked against images.txt and --overlay uses its photos (optional)")
    parser.add_argument("--CUB_GHA_save_path", default="./CUB_GHA", help="output folder")
    parser.add_argument("--gaze_file_path", nargs="+", default=["./Fixation.txt"],
                        help="fixation file(s) or a folder of run files (image or display layout, detected per file)")
    parser.add_argument("--single_fixation", action="store_true", help="one map per (filtered, merged) fixation")
    parser.add_argument("--sigma", type=float, default=None,
                        help="Gaussian sd in original-image pixels for image-layout input "
                             "(default: 75 screen px seen in the image, as large as fits 1920x1080: ~26 px for 500x375)")
    parser.add_argument("--min_duration", type=float, default=None,
                        help="drop fixations shorter than this (ms); default 100 (all) or 350 (single), as published")
    parser.add_argument("--max_fixations", type=int, default=7, help="single-fixation mode: merge the closest pair down to N")
    parser.add_argument("--compat", action="store_true",
                        help="reproduce the published script's arithmetic, defects included: drop the last fixation "
                             "of each line, last line of an id wins, integer merge midpoints, its screen-edge handling "
                             "(fixations left of or above the screen dropped, past the right or bottom edge clipped); "
                             "display-layout input (Fixation.txt) then gives the published 8-bit maps bit for bit")
    parser.add_argument("--layout", choices=["auto", "image", "display"], default="auto", help="fixation file layout")
    parser.add_argument("--skip_bad_lines", action="store_true", help="skip and count malformed lines instead of stopping")
    parser.add_argument("--allow_empty", action="store_true",
                        help="exit 0 when the gaze files hold no fixation line (default: an error)")
    limits = ReadLimits()
    parser.add_argument("--max_line_bytes", type=int, default=limits.max_line_bytes,
                        help="longest gaze line read, bytes (longer: a bad line)")
    parser.add_argument("--max_fixations_per_line", type=int, default=limits.max_fixations,
                        help="most fixations on one gaze line (more: a bad line)")
    parser.add_argument("--max_image_side", type=int, default=limits.max_image_side,
                        help="largest image (and displayed) width or height in a gaze line, px (larger: a bad line)")
    parser.add_argument("--ids", default=None, help="subset of image ids: '1,5,10-20' or @file with one id per line")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    parser.add_argument("--overlay", action="store_true", help="also write jet overlays on the CUB photos")
    parser.add_argument("--jpeg_quality", type=int, default=75, help="JPEG quality (75: PIL's default, as published)")
    parser.add_argument("--overwrite", action="store_true", help="re-render images whose maps exist")
    parser.add_argument("--download", action="store_true",
                        help="first fetch the five CUB-GHA run files (SHA-256 verified) into --gaze_file_path "
                             "(default data_5runs/)")
    return parser.parse_args(argv)


def parse_ids(spec: str) -> set[str]:
    """'1,5,10-20' or '@path' (one id per line) -> set of id strings."""
    if spec.startswith("@"):
        return {line.strip() for line in Path(spec[1:]).read_text().splitlines() if line.strip()}
    ids: set[str] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit():
            ids.update(str(i) for i in range(int(low), int(high) + 1))
        else:
            ids.add(part)
    return ids


def _gaze_paths(args: argparse.Namespace) -> list[str]:
    """Fetch the run files first with --download; hint at data_5runs when the default is absent."""
    paths = args.gaze_file_path
    if args.download:
        from gaze.download import download_cub_gha

        destination = paths[0] if paths != ["./Fixation.txt"] else "data_5runs"
        download_cub_gha(destination)
        return [destination]
    if paths == ["./Fixation.txt"] and not Path(paths[0]).exists():
        hint = " (found ./data_5runs: pass --gaze_file_path data_5runs)" if Path("data_5runs").is_dir() else (
            " (get the real run files with --download, or `python -m gaze download cub-gha`)")
        raise FileNotFoundError(f"./Fixation.txt: no such fixation file{hint}")
    return paths


def load_records(args: argparse.Namespace) -> tuple[dict, int]:
    """Read, optionally apply the compat defects, pool lines per image and select ids."""
    limits = ReadLimits(args.max_line_bytes, args.max_fixations_per_line, args.max_image_side)
    paths = _gaze_paths(args)
    result = read_fixations(paths, layout=args.layout, skip_bad_lines=args.skip_bad_lines, limits=limits)
    for bad in result.skipped:
        print(f"skipped {bad.location}: {bad.reason}", file=sys.stderr)
    lines = result.records
    if not lines and not args.allow_empty:
        files = ", ".join(map(str, list_fixation_files(paths)))
        raise EmptyGazeError(f"{files}: no fixation line to render ({len(result.skipped)} bad lines skipped); "
                             "pass --allow_empty to accept an empty input")
    if args.compat:
        # Published script: the parser drops each line's last triple, and a later line of
        # the same id overwrites the earlier map (cub_pim.md §1.10).
        lines = list({r.image_id: drop_last_fixation(r) for r in lines}.values())
    records = merge_by_image(lines)
    if args.ids:
        wanted = parse_ids(args.ids)
        missing = sorted(wanted - records.keys())
        if missing:
            print(f"warning: {len(missing)} requested ids have no fixations: {', '.join(missing[:10])}",
                  file=sys.stderr)
        records = {i: r for i, r in records.items() if i in wanted}
    return records, len(result.skipped)


class EmptyGazeError(ValueError):
    """The gaze input holds no fixation line (an error unless --allow_empty)."""


def read_cub_images(cub_dir: Path) -> dict[str, Path] | None:
    """{id: photo path} from ``images.txt`` of a CUB_200_2011 folder, or None when absent."""
    images_file = cub_dir / "images.txt"
    if not images_file.is_file():
        return None
    rows = read_id_table(images_file, 2, last_is_rest=True)
    return {str(i): cub_dir / "images" / row.fields[0].strip() for i, row in rows.items()}


def report_id_match(records: dict, photos: dict[str, Path]) -> None:
    """Say how many gaze ids are not in images.txt and how many images have no gaze."""
    no_photo = sorted(records.keys() - photos.keys(), key=str)
    no_gaze = len(photos.keys() - records.keys())
    if no_photo or no_gaze:
        print(f"warning: {len(no_photo)} gaze ids are not in images.txt (e.g. {', '.join(no_photo[:5])}); "
              f"{no_gaze} images of images.txt have no gaze", file=sys.stderr)


def write_overlays(records: dict, photos: dict[str, Path], save_path: Path, single: bool) -> int:
    """Jet overlays of the written maps on the CUB photos: ``<save>/Overlay/<same relative path>``."""
    folder = save_path / (SINGLE_DIR if single else ALL_DIR)
    written = 0
    for image_id in tqdm(sorted(records.keys() & photos.keys(), key=str), unit="img", desc="overlays", disable=None):
        photo = np.asarray(load_rgb_image(photos[image_id]))
        maps = sorted((folder / image_id).glob("*.jpg")) if single else [folder / f"{image_id}.jpg"]
        for map_path in filter(Path.is_file, maps):
            overlay = overlay_heatmap(photo, load_heatmap(map_path, size=photo.shape[:2]).numpy())
            save_image(save_path / "Overlay" / map_path.relative_to(folder), overlay)
            written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        records, skipped_lines = load_records(args)
    except (FixationFormatError, FileNotFoundError, EmptyGazeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    options = BuildOptions(
        single_fixation=args.single_fixation, sigma=args.sigma, min_duration=args.min_duration,
        max_fixations=args.max_fixations, compat=args.compat, jpeg_quality=args.jpeg_quality,
        overwrite=args.overwrite,
    )
    save_path = Path(args.CUB_GHA_save_path)
    photos = read_cub_images(Path(args.CUB_dir_path))
    if photos is not None:
        report_id_match(records, photos)
    elif args.overlay:
        print(f"error: --overlay needs the CUB photos: {args.CUB_dir_path}/images.txt not found "
              "(set --CUB_dir_path)", file=sys.stderr)
        return 1
    try:
        with tqdm(total=len(records), unit="img", desc="CUB-GHA", disable=None) as bar:
            summary = build_gha(records.values(), save_path, options, workers=args.workers, progress=bar.update)
    except OptionsMismatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full or read-only disk: name what could not be written
        where = f" {error.filename}" if error.filename else ""
        print(f"error: writing the maps into {save_path} failed:{where}: {error.strerror or error}; "
              "finished maps are kept, re-run to continue", file=sys.stderr)
        return 1
    folder = save_path / (SINGLE_DIR if args.single_fixation else ALL_DIR)
    print(
        f"{summary.images} images, {summary.maps_written} maps written to {folder}, "
        f"{summary.images_done_before} already done, {skipped_lines} bad lines skipped, "
        f"{summary.images_all_outside} with every fixation outside the image, "
        f"{time.perf_counter() - start:.1f} s"
    )
    if args.overlay:
        count = write_overlays(records, photos, save_path, args.single_fixation)
        print(f"{count} overlays written to {save_path / 'Overlay'}")
    if summary.images_without_fixations:
        print(f"note: {summary.images_without_fixations} images had no fixation left after the "
              f"{options.effective_min_duration:g} ms filter (all-zero maps)", file=sys.stderr)
    if summary.images_all_outside:
        print(f"warning: {summary.images_all_outside} images have every fixation outside the image "
              f"(e.g. id {summary.first_all_outside}): their maps hold only the Gaussians' tails, or nothing",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the patient-disjoint splits of a CXR-Eye config (``gaze.data.patient_splits``) and print them.

The config keys of cxr/config.py; the table goes next to the run, never into the data
folders (HAFC wrote ``5_fold_split.csv`` beside ``master_sheet.csv``, cxr §2.2)::

    python cxr/prepare.py                          # <model_path>/<model_name>/splits.csv
    python cxr/prepare.py --split=holdout --egd_dir=/data/egd-cxr/1.0.0 --mimic_root=/data/mimic-cxr-jpg
"""

from __future__ import annotations

import sys

from cxr.experiment import build_catalogue, load_cxr_config, run_dir, saved_split_table
from gaze.attention.egd import CLASS_NAMES
from gaze.config import config_or_report
from gaze.data.patient_splits import describe_splits
from gaze.engine.logging import report_logger


def main(argv: list[str] | None = None) -> int:
    """Write ``<run>/splits.csv`` for the config (``cxr/config.py`` + overrides) and print its summary."""
    config = config_or_report(load_cxr_config, argv)
    if config is None:
        return 2
    out_dir = run_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = saved_split_table(config, build_catalogue(config), out_dir)
    report_logger().info(f"{describe_splits(table, CLASS_NAMES)}\n-> {out_dir / 'splits.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

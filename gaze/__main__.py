"""``python -m gaze <command> [args]`` (also the ``gaze`` console script).

Commands:
  download   fetch the real CUB-GHA run files with SHA-256 checks (gaze.download)
  merge      write the aggregate Fixation.txt from the run files (gaze.attention.merge)
  agreement  inter-run agreement of the gaze data, table and plot (gaze.attention.agreement)
  demo       write the synthetic CUB_200_2011-layout demo dataset (gaze.synthetic.cub)
  annotate   the attention annotation app: prepare, serve, export (gaze.annotate.cli)
  unpickle   a pickled whole model -> a plain state dict, with --trust_pickle (gaze.unpickle)
"""

from __future__ import annotations

import importlib
import sys

#: command -> module whose ``main(argv)`` runs it.
COMMANDS = {
    "download": "gaze.download",
    "merge": "gaze.attention.merge",
    "agreement": "gaze.attention.agreement",
    "demo": "gaze.synthetic.cub",
    "annotate": "gaze.annotate.cli",
    "unpickle": "gaze.unpickle",
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the command's module; print the command list on no or unknown command."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip())
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
            return 2
        return 0
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())

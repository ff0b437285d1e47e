"""``python -m gaze unpickle --trust_pickle IN OUT``: a pickled whole model -> a plain state dict file.

Some released checkpoints pickle a whole model object (the NYCU VRDL HW1 CAL checkpoint:
``{'model': <the model>, 'losses', 'accuracies', 'test_accuracies', 'feature_center'}``),
which ``torch.load(weights_only=True)`` rightly refuses: unpickling runs code named by the
file. This command unpickles it only when told to trust it (``--trust_pickle``); classes that
are not importable here become empty ``nn.Module`` stand-ins, so only the parameters and
buffers come out. It writes ``{'logs': {}, 'state_dict': ..., 'feature_center': ...}`` (the
layout of a released CAL checkpoint, read by ``gaze.engine.importers``), loadable with
``weights_only=True``.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import types
from pathlib import Path

import torch
from torch import nn

from gaze.atomic import atomic_path


class _PermissiveUnpickler(pickle.Unpickler):
    """Finds importable classes as usual; any other class becomes an empty nn.Module subclass."""

    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ModuleNotFoundError, AttributeError):
            return type(name, (nn.Module,), {"__module__": f"unpickled.{module}"})


PERMISSIVE_PICKLE = types.SimpleNamespace(__name__="gaze_permissive_pickle", Unpickler=_PermissiveUnpickler,
                                          load=pickle.load)


def plain_state(obj: object, key: str) -> dict:
    """The released-CAL-layout dict of a loaded object (a module, or a dict holding one under ``key``)."""
    extras = {}
    if isinstance(obj, dict):
        extras = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if key not in obj:
            raise KeyError(f"no {key!r} entry (entries: {sorted(obj)}); pass --key")
        obj = obj[key]
    if not isinstance(obj, nn.Module):
        raise TypeError(f"the {key!r} entry is a {type(obj).__name__}, not a model")
    state = {name: tensor.detach().clone() for name, tensor in obj.state_dict().items()}
    return {"logs": {}, "state_dict": state, **({"feature_center": extras["feature_center"]}
                                                 if "feature_center" in extras else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaze unpickle", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--key", default="model", help="the entry of a checkpoint dict holding the model (default 'model')")
    parser.add_argument("--trust_pickle", action="store_true",
                        help="required: unpickling can run code named by the file; only for files you trust")
    args = parser.parse_args(argv)
    if not args.trust_pickle:
        print(f"refusing to unpickle {args.source}: unpickling runs code named by the file. If you trust where it "
              "came from, add --trust_pickle", file=sys.stderr)
        return 2
    loaded = torch.load(args.source, map_location="cpu", weights_only=False, pickle_module=PERMISSIVE_PICKLE)
    state = plain_state(loaded, args.key)
    with atomic_path(args.target) as temporary:
        torch.save(state, temporary)
    print(f"{args.source} -> {args.target}: {len(state['state_dict'])} tensors"
          f"{' and feature_center' if 'feature_center' in state else ''} (load it with weights_only=True)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""THE state-dict loader: every weight copy (backbone files, released checkpoints, KFN's GAT
initialisation, ``init_from``, resume) goes through :func:`load_state_dict`.

It strips wrapper prefixes (DDP ``module.``, ``torch.compile``'s ``_orig_mod.``), selects a
sub-tree by prefix, checks every shape, and reports missing, unexpected and absent optional
keys in errors that name the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

from torch import Tensor, nn

log = logging.getLogger(__name__)

#: Prefixes added by wrappers: DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Buffers a file may lack without harm (BatchNorm's step counter).
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


@dataclass
class LoadReport:
    """What a load did: tensors copied of the module's total, file keys not used (``ignored``),
    module keys absent from the file (``missing``; optional ones apart)."""

    source: str
    loaded: int
    total: int
    ignored: list[str] = field(default_factory=list)
    absent_optional: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"loaded {self.loaded}/{self.total} tensors from {self.source}"
        for label, keys in (("ignored", self.ignored), ("missing", self.missing)):
            if keys:
                more = "..." if len(keys) > 4 else ""
                text += f", {label} {len(keys)} ({', '.join(keys[:4])}{more})"
        return text


def strip_prefixes(key: str, prefixes: tuple[str, ...] = WRAPPER_PREFIXES) -> str:
    """Remove leading wrapper prefixes (any order, repeated) from a parameter name."""
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _listed(keys: list[str], count: int = 4) -> str:
    return f"{len(keys)}: {', '.join(keys[:count])}{'...' if len(keys) > count else ''}" if keys else "0"


def load_state_dict(
    module: nn.Module,
    state: Mapping[str, Tensor],
    origin: str,
    prefix: str = "",
    strict: bool = True,
    allow_unexpected: bool = True,
) -> LoadReport:
    """Copy ``state`` into ``module`` by name, shapes checked.

    Args:
        module: receives the tensors.
        state: a flat state dict (wrapper prefixes are stripped here).
        origin: the file (or a description) named in errors and the report.
        prefix: only keys under it are used, with it removed (e.g. ``'backbone.net.'``).
        strict: the module's keys the file lacks are an error (optional buffers apart).
        allow_unexpected: file keys the module lacks are reported, not an error.

    Returns:
        A :class:`LoadReport`.

    Raises:
        ValueError: a shape mismatch (the key and both shapes named), nothing matched,
            or missing / unexpected keys that ``strict`` / ``allow_unexpected`` forbid.
    """
    target = type(module).__name__
    stripped = {strip_prefixes(k): v for k, v in state.items()}
    if prefix:
        stripped = {k[len(prefix):]: v for k, v in stripped.items() if k.startswith(prefix)}
    own = module.state_dict()
    for key, tensor in own.items():
        if key in stripped and stripped[key].shape != tensor.shape:
            raise ValueError(f"{origin}: shape mismatch for {prefix + key!r}: file {tuple(stripped[key].shape)}, "
                             f"model {tuple(tensor.shape)} ({target})")
    matched = [k for k in own if k in stripped]
    absent = [k for k in own if k not in stripped]
    absent_optional = [k for k in absent if k.endswith(OPTIONAL_SUFFIXES)]
    missing = [k for k in absent if k not in absent_optional]
    ignored = [k for k in stripped if k not in own]
    if not matched or (strict and missing) or (ignored and not allow_unexpected):
        raise ValueError(
            f"{origin}: checkpoint does not fit the {target}: {len(matched)} of {len(own)} tensors matched; "
            f"missing {_listed(missing)}; unexpected {_listed(ignored)}; file keys start with {list(stripped)[:3]}")
    module.load_state_dict({k: stripped[k] for k in matched}, strict=False)
    return LoadReport(origin, len(matched), len(own), ignored, absent_optional, missing)

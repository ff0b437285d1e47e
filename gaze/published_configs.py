"""The papers' own config files read as override files: FGVC-PIM's YAML (cub_pim.md §3.1).

``python folder/train.py folder/configs/CUB200_SwinT.yaml`` reads every key of PIM's YAML into
ours (:data:`PIM_KEYS`); a key PIM's code does not read is an error naming it. What the
published code does with a key and we do differently is said in :data:`PIM_KEYS` and, where
a key changes nothing here, in a warning:

* ``train_root`` / ``val_root`` -> ``train_dir`` / ``test_dir`` of the 'pim' layout (PIM's
  "val" set is its test set; validation is carved from the training images, the epoch and
  the reported head are chosen on it); no trailing slash needed; relative paths are taken
  from the repository root, as all our config paths;
* ``model_name`` -> the published builder's backbone and FPN up-sampling (swin-t: timm
  Swin-L 384 with conv, each stage read after its patch merging as published; resnet50: ResNet-50, bilinear, MIIL 21k weights from
  ``resnet50_miil_21k.pth``; vit: ViT-B/16 MIIL, conv, blocks.8-11 with the class token;
  efficient: EfficientNet-B7,
  bilinear, torchvision's features.4-7 read from timm's blocks.3-6), any other name = a timm
  architecture;
* ``warmup_batchs`` counts batches; our warm-up counts optimizer steps: / ``update_freq``;
* ``use_wandb``, ``wandb_entity``, ``eval_freq``: no effect (tensorboard and metrics.csv are
  always written; validation runs every epoch).
"""

from __future__ import annotations

import difflib
import math
import warnings
from pathlib import Path
from typing import Any, Callable

from gaze.config import ConfigError

#: PIM's ``model_name`` -> (our backbone, fpn_upsample, pretrain_path, the stages read) of the published builder.
PIM_BUILDERS = {
    "swin-t": ("swin_large_patch4_window12_384", "conv", None, "swin"),  # timm hub IN-22k weights: never downloaded
    "resnet50": ("resnet50", "bilinear", "resnet50_miil_21k.pth", None),
    "vit": ("vit_base_patch16_224_miil", "conv", "vit_base_patch16_224_miil_21k.pth", "vit"),
    "efficient": ("efficientnet_b7", "bilinear", None, "efficientnet"),  # torchvision weights: never downloaded
}
#: Keys PIM reads that change nothing here (why).
PIM_IGNORED = {
    "use_wandb": "tensorboard and metrics.csv are always written",
    "wandb_entity": "tensorboard and metrics.csv are always written",
    "eval_freq": "validation runs every epoch (it chooses the epoch)",
}
#: Plug-ins the published code offers off; their off paths are broken there (§3.7) and not offered.
PIM_REQUIRED_ON = ("use_fpn", "use_selection", "use_combiner")
#: Values every PIM YAML implies: the method, PIM's data layout and transforms (resized to
#: data_size x 510/384: the published 510 at 384 px; it keeps 510 at 448, --resize_size=510),
#: its warm-up + cosine per iteration (the corrected T - W law; --lr_schedule=pim_published).
PIM_IMPLIED = {"model_type": "pim", "layout": "pim", "transforms": "pim", "lr_schedule": "pim"}

Pairs = list[tuple[str, Any, str]]


def _number(value: Any, key: str, path: Path, kind: type = float) -> Any:
    """A YAML number (PyYAML reads ``5e-4`` as a string: YAML 1.1 wants ``5.0e-4``)."""
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: key {key!r} = {value!r}: expected a number") from None
    if kind is int and number != float(value):
        raise ConfigError(f"{path}: key {key!r} = {value!r}: expected a whole number")
    return number


def _backbone(name: Any, key: str, path: Path) -> Pairs:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}: key {key!r} = {name!r}: expected resnet50, swin-t, vit, efficient or a timm name")
    if name in PIM_BUILDERS:
        from gaze.models.backbones import EFFICIENTNET_FEATURES_4_7, SWIN_MERGED_STAGES, VIT_BLOCKS_8_11

        backbone, upsample, weights, taps = PIM_BUILDERS[name]
        stages = {"swin": SWIN_MERGED_STAGES, "vit": VIT_BLOCKS_8_11, "efficientnet": EFFICIENTNET_FEATURES_4_7}.get(taps)
        stages = list(stages) if stages else None  # as published: Swin after each merging, ViT with its class
        # token, EfficientNet's features.4-7
        return [("backbone", backbone, key), ("fpn_upsample", upsample, key), ("pretrain_path", weights, key),
                ("stage_modules", stages, key)]
    from gaze.models.backbones import PACKAGE_WEIGHTS  # timm only when a YAML is read

    package = next((alias for alias, (_, _, arch) in PACKAGE_WEIGHTS.items() if arch == name), None)
    return [("backbone", name, key), ("pretrain_path", package, key)]


def _num_selects(value: Any, key: str, path: Path) -> Pairs:
    layers = [f"layer{l}" for l in range(1, 5)]
    if not isinstance(value, dict) or sorted(value) != layers:
        raise ConfigError(f"{path}: key {key!r} = {value!r}: expected {{layer1: n, layer2: n, layer3: n, layer4: n}}")
    return [("num_selects", [_number(value[layer], f"{key}.{layer}", path, int) for layer in layers], key)]


def _optimizer(value: Any, key: str, path: Path) -> Pairs:
    if value == "SGD":  # SGD(momentum 0.9, nesterov, weight decay) (§3.5)
        return [("optimizer", "sgd", key), ("momentum", 0.9, key), ("nesterov", True, key)]
    if value == "AdamW":  # AdamW(lr) only: torch's default weight decay 0.01
        return [("optimizer", "adamw", key), ("weight_decay", 0.01, key)]
    raise ConfigError(f"{path}: key {key!r} = {value!r}: PIM offers 'SGD' or 'AdamW'")


def _path(ours: str) -> Callable[[Any, str, Path], Pairs]:
    def translate(value: Any, key: str, path: Path) -> Pairs:
        if key == "train_root" and value is None:
            raise ConfigError(f"{path}: train_root: ~ is PIM's evaluation-only mode: run folder/evaluate.py "
                                     "--checkpoint=<best.pt> with this file instead")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: key {key!r} = {value!r}: expected a folder path or ~")
        return [(ours, value, key)]
    return translate


def _same(ours: str, kind: type | None = None) -> Callable[[Any, str, Path], Pairs]:
    def translate(value: Any, key: str, path: Path) -> Pairs:
        return [(ours, value if kind is None or value is None else _number(value, key, path, kind), key)]
    return translate


#: PIM key -> translator ``(value, key, path) -> [(our key, value, PIM key)]``.
PIM_KEYS: dict[str, Callable[[Any, str, Path], Pairs]] = {
    "project_name": lambda value, key, path: [("model_path", f"runs/{value}", key)],  # published: records/<project>/<exp>
    "exp_name": lambda value, key, path: [("model_name", str(value), key)],
    "train_root": _path("train_dir"),
    "val_root": _path("test_dir"),
    "data_size": _same("input_size", int),
    "num_workers": _same("workers", int),
    "batch_size": _same("batch_size", int),
    "model_name": _backbone,
    "pretrained": _path("init_from"),  # published: the weights (and optimizer) to start from; ours resume by themselves
    "optimizer": _optimizer,
    "max_lr": _same("init_lr", float),
    "max_epochs": _same("end_epoch", int),
    "use_amp": lambda value, key, path: [("amp", "fp16" if value else None, key)],
    "fpn_size": _same("fpn_size", int),
    "num_classes": _same("num_classes", int),
    "num_selects": _num_selects,
    "lambda_b": _same("lambda_b", float),
    "lambda_s": _same("lambda_s", float),
    "lambda_n": _same("lambda_n", float),
    "lambda_c": _same("lambda_c", float),
    "update_freq": _same("accumulate_steps", int),
    "log_freq": _same("log_interval", int),
}
#: Keys translated after the others, from several PIM keys.
PIM_COMBINED = ("wdecay", "warmup_batchs")


def read_pim_yaml(path: str | Path) -> Pairs:
    """[(our key, value, the PIM key it came from)] of a FGVC-PIM YAML config, in file order,
    PIM's implied values (:data:`PIM_IMPLIED`) first; warns about keys that change nothing.

    Raises:
        ConfigError: not YAML, not a mapping, a key PIM does not read (named, with the
            closest one), a plug-in switched off, a value of the wrong kind.
    """
    import yaml  # only when a YAML is read

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a YAML file PIM could read ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected PIM's key: value mapping, got {type(data).__name__}")
    known = [*PIM_KEYS, *PIM_COMBINED, *PIM_IGNORED, *PIM_REQUIRED_ON]
    pairs: Pairs = [(key, value, "implied by a PIM YAML") for key, value in PIM_IMPLIED.items()]
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown PIM key {key!r}{hint}; PIM reads {', '.join(known)}")
        if key in PIM_REQUIRED_ON and value is not True:
            raise ConfigError(f"{path}: {key}: {value!r}: PIM without its plug-ins is broken as published "
                                     "(cub_pim.md §3.7) and not offered; use model_type 'baseline' for a plain backbone")
        if key in PIM_IGNORED:
            warnings.warn(f"{path}: {key} has no effect here: {PIM_IGNORED[key]}", UserWarning, stacklevel=2)
        elif key in PIM_KEYS:
            pairs += PIM_KEYS[key](value, key, path)
    if "wdecay" in data and data.get("optimizer", "SGD") == "SGD":  # AdamW is given lr only (§3.5)
        pairs.append(("weight_decay", _number(data["wdecay"], "wdecay", path), "wdecay"))
    if "warmup_batchs" in data:  # batches -> optimizer steps
        batches = _number(data["warmup_batchs"], "warmup_batchs", path, int)
        steps = math.ceil(batches / _number(data.get("update_freq", 1), "update_freq", path, int))
        pairs.append(("warmup_steps", steps, "warmup_batchs / update_freq"))
    return pairs


#: File suffix -> reader of the papers' own config files (``gaze.config.load_config``'s ``readers``).
FOREIGN_CONFIGS: dict[str, Callable[[Path], Pairs]] = {".yaml": read_pim_yaml, ".yml": read_pim_yaml}

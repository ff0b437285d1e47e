"""``GazeModel``: the contract every registered model keeps, and the facts trees ask of it.

An experiment tree never branches on a method's name (DESIGN.md §1-2): it asks the model's
class which splits need gaze or masks (:meth:`GazeModel.needs_gaze`), how to build it from
a config (:meth:`GazeModel.from_config`), which layers Grad-CAM explains
(:attr:`GazeModel.cam_layers`) and what to report about a trained instance
(:meth:`GazeModel.describe`). Evaluation calls :meth:`GazeModel.predict`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from torch import Tensor, nn

#: The split roles of every tree: training, model selection, final evaluation.
SPLITS = ("train", "val", "test")


#: Batch entries that are images of the sample (mirrored with it).
SPATIAL_KEYS = ("image", "gaze", "mask", "masked_image")


def mirrored_batch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The batch with every spatial entry flipped horizontally."""
    return {key: value.flip(-1) if key in SPATIAL_KEYS and value is not None else value for key, value in batch.items()}


class GazeModel(nn.Module):
    """Base class of the registered models.

    Class attributes (the method's facts):
        name: the registry key, set by ``register_model``.
        gaze_splits: splits whose batches must carry ``gaze`` (B,1,H,W).
        mask_splits: splits whose batches must carry human ``mask`` (B,1,H,W).
        inference_needs_gaze: ``predict`` gives the gaze to ``forward`` (KFN).
        cam_layers: panel title -> module name Grad-CAM explains (in ``named_modules``).
        cam_panel_prefix: file-name prefix of the Grad-CAM panels; None = ``'<name>_'``.
        train_color_jitter: (brightness, contrast[, saturation]) of the method's published
            training recipe, or None (no ColorJitter).
        config_keys: constructor argument -> config key, where the two names differ.
        phases: folder names of the consecutive fits a run of this method makes (GRADIA:
            'phase1', 'phase2'; the engine sets ``model.phase``); () = one fit.
        report_protocols: evaluation protocols a finished run also reports on test (CAL:
            'raw', 'raw+crop', 'cal_tta').
        train_resize_ratio: input_size / resize side of the method's recipe (CAL: 0.875,
            Resize 512 -> crop 448); None: resize to the input size.
    """

    name: ClassVar[str] = ""
    gaze_splits: ClassVar[frozenset[str]] = frozenset()
    mask_splits: ClassVar[frozenset[str]] = frozenset()
    inference_needs_gaze: ClassVar[bool] = False
    cam_layers: ClassVar[Mapping[str, str]] = {"Grad-CAM": "backbone"}
    cam_panel_prefix: ClassVar[str | None] = None
    train_color_jitter: ClassVar[tuple[float, ...] | None] = None
    config_keys: ClassVar[Mapping[str, str]] = {}
    phases: ClassVar[tuple[str, ...]] = ()
    report_protocols: ClassVar[tuple[str, ...]] = ()
    train_resize_ratio: ClassVar[float | None] = None

    @classmethod
    def needs_gaze(cls, split: str, config: Mapping[str, Any]) -> bool:
        """Whether batches of ``split`` ('train' | 'val' | 'test') must carry the gaze map."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        return split in cls.gaze_splits

    @classmethod
    def training_recipe(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Config values of the method's own published training (optimiser, schedule,
        selection), for keys a tree leaves unset; {} = the tree's default recipe."""
        return {}

    @classmethod
    def constructor_arguments(cls, config: Mapping[str, Any], **resolved: Any) -> dict[str, Any]:
        """Constructor keyword arguments from ``config`` (keys named as the arguments, or by
        :attr:`config_keys`); ``resolved`` values (paths, sizes the tree computed) win.

        Arguments the config does not hold, or holds as None, keep the constructor's default
        (so ``dropout=None`` is each method's published value).
        """
        parameters = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(resolved) - set(parameters))
        if unknown:
            raise TypeError(f"{cls.__name__} takes no argument {', '.join(unknown)}")
        arguments = {}
        for argument in parameters:
            key = cls.config_keys.get(argument, argument)
            if argument in resolved:
                arguments[argument] = resolved[argument]
            elif argument != "self" and config.get(key) is not None:
                arguments[argument] = config[key]
        return arguments

    @classmethod
    def config_keys_read(cls) -> list[str]:
        """The config keys :meth:`constructor_arguments` reads: a saved config's values for
        them rebuild the same network (``cub/evaluate.py`` takes them from a checkpoint)."""
        parameters = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        return [cls.config_keys.get(name, name) for name in parameters]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **resolved: Any) -> GazeModel:
        """The model a tree's config describes (see :meth:`constructor_arguments`)."""
        return cls(**cls.constructor_arguments(config, **resolved))

    @property
    def panel_prefix(self) -> str:
        """File-name prefix of this model's Grad-CAM panels."""
        return f"{self.name}_" if self.cam_panel_prefix is None else self.cam_panel_prefix

    def forward_features(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """Feature maps (B,C,h,w) the head classifies."""
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits (B, num_classes) of :meth:`forward_features` output."""
        raise NotImplementedError

    def forward(self, images: Tensor, gaze: Tensor | None = None) -> Tensor:
        """Logits (B, num_classes) of ImageNet-normalised images (B,3,H,W)."""
        return self.forward_head(self.forward_features(images, gaze))

    def loss(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Training terms: total under 'loss', parts 'loss_*', detached 'logits'."""
        raise NotImplementedError

    def predict(self, batch: Mapping[str, Any]) -> Tensor:
        """Evaluation logits (B, num_classes) of a batch (the gaze only when inference needs it)."""
        gaze = batch.get("gaze") if self.inference_needs_gaze else None
        return self(batch["image"], gaze=gaze)

    def predict_views(self, batch: Mapping[str, Any], crops: Sequence[tuple[float, float]] = (),
                      flip: bool = False) -> Tensor | Mapping[str, Tensor]:
        """Mean logits of the view (and its mirror with ``flip``); attention ``crops``
        ``(theta, padding)`` need a model with attention maps (CAL, WS-DAN override this)."""
        if crops:
            raise ValueError(f"{type(self).__name__} has no attention maps to crop by: the protocols with attention "
                             "crops ('raw+crop', 'cal_tta') are for CAL / WS-DAN")
        views = [batch, mirrored_batch(batch)] if flip else [batch]
        logits = [self.predict(view) for view in views]
        return sum(out["logits"] if isinstance(out, Mapping) else out for out in logits) / len(logits)

    def attention_visuals(self, images: Tensor) -> dict[str, Tensor]:
        """What evaluate.py draws of the model's own attention: ``'attention'`` (B,1,H,W) in [0, 1]
        and augmented views of the images (``'crop'``, ``'drop'``: normalised like them); {}
        for a model without attention maps (CAL / WS-DAN override this)."""
        return {}

    def init_from(self, checkpoint: str | Path | dict) -> None:
        """Start from the weights of ``checkpoint`` (ours or a released format) of this model,
        through the one state-dict loader (strict: every key must fit)."""
        from gaze.engine.importers import load_model_checkpoint  # engine builds on models: import when used

        load_model_checkpoint(self, checkpoint)

    def describe(self) -> dict[str, Any]:
        """Method-specific facts of a trained instance for the run's reports (JSON values)."""
        return {}

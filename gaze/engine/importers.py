"""Convert the CUB-GHA papers' released checkpoints to our format, and load any into a model.

Released GAT (cub_pim §1.8): ``{'epoch', 'model_state_dict', 'learning_rate'}`` with keys
``pretrained_model.{conv1,bn1,layer1-4,fc}.*`` (a torchvision ResNet; its unused 1000-class
``fc`` is dropped) and ``cls_net.*``.
Released KFN: ``pretrained_model{1,2}.{0,1,4,5,6,7}.*`` (an ``nn.Sequential`` of the ResNet
children: 0 conv1, 1 bn1, 4-7 layer1-4) and ``cls_net.*``.
Either may carry ``module.`` prefixes (DataParallel) or be a bare state dict.

CXR-Eye (cxr §2.3-2.4, §2.7: bare state dicts in ``<k>_fold/best.pth``): GAT has the smp
encoder under ``encoder.`` (timm EfficientNet names; its unused ``conv_head``/``bn2`` are
dropped, as our ``encoder_only`` backbone stops at the last stage) and one Linear in the
classification head; KFN has ``branch1.`` / ``branch2.`` encoders and one Linear(640 -> 3).

CAL (raoyongming/CAL ``fgvc/``, gradia_cal.md B8): ``model_bestacc.pth`` = ``{'logs', 'state_dict'}``
and ``model.ckpt`` = ``{'logs', 'state_dict'`` (``module.`` prefixes)``, 'feature_center'}``, the
module names of WS-DAN/CAL's ``WSDAN_CAL``: ``features.{0,1,4,5,6,7}.*`` (an ``nn.Sequential`` of a
ResNet's children, as KFN's), ``attentions.conv.weight`` + ``attentions.bn.*`` (BasicConv2d) and
``fc.weight``. WS-DAN.PyTorch checkpoints have the same layout. Every key is mapped and every
shape checked (the published loader silently skipped mismatches, C1); the converted file loads
into a 'cal' or a 'wsdan' model (the weights are the same; WS-DAN.PyTorch's ResNet keeps
layer4 at stride 2: evaluate those with ``--output_stride=32``). A file without
``feature_center`` (``model_bestacc.pth``) gets zero centres (only training uses them).

FGVC-PIM (cub_pim.md §3.3, §3.6): ``backup/best.pt`` / ``last.pt`` = ``{'model', 'optimizer', 'epoch'}``
(epoch 0-based), the names of its ``PluginMoodel``: ``backbone.*`` (the timm network; ResNet-50's
through torchvision's feature extractor, same names), ``fpn.Proj_layer{1-4}.{0,2}.*`` (Linear,
or 1x1 Conv2d for the "Conv" projection: the same weights squeezed), ``fpn.Up_layer{2-4}.*``
(the token-axis Conv1d up path), ``fpn_classifier_layer{1-4}.{0,1,3}.*`` and ``combiner.*`` (our
names). Swin checkpoints of timm 0.5.4 keep each PatchMerging at the END of stages 1-3
(``layers.N.downsample``): it moves to the start of the next stage (``layers.N+1.downsample``,
timm >= 0.9) and the model reads the published stages after each merging. ResNet and Swin
backbones import; ViT (fine-tuned on ImageNet-normalised inputs, where ours feeds MIIL's input
scale) and torchvision's EfficientNet-B7 (other
parameter names) are refused, saying so. The combiner fixes only sum(num_selects): the
published Swin-L's 2720 = [2048, 512, 128, 32] is filled in; other totals need ``--num_selects``.

Our checkpoint (DESIGN §2): ``{'model', 'optimizer', 'scheduler', 'scaler', 'epoch',
'best_metric', 'model_name', 'config', 'version'}``, only tensors and primitives.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

import gaze
from gaze.state_dicts import load_state_dict, strip_prefixes
from gaze.torch_files import load_torch_file

#: Sequential index -> ResNet child name in the released KFN.
KFN_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}

#: (block type, blocks per stage) -> torchvision / timm ResNet name.
RESNET_DEPTHS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}


#: Key :func:`import_checkpoint` adds (in memory only) naming the file a checkpoint was read from.
SOURCE_KEY = "source_file"


def checkpoint_origin(source: str | Path | dict) -> str:
    """A name for error messages: the file path (also of a dict read by :func:`import_checkpoint`)."""
    if isinstance(source, dict):
        return str(source.get(SOURCE_KEY) or source.get("imported_from") or "<checkpoint dict>")
    return str(source)


def import_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file (``weights_only=True``) and return it in our format.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown format (the message names the file and its first keys).
    """
    path = Path(path)
    checkpoint = convert_checkpoint(load_torch_file(path), origin=str(path))
    return {**checkpoint, SOURCE_KEY: str(path)}


def convert_checkpoint(raw: dict, origin: str = "<checkpoint dict>") -> dict:
    """Detect the format of a loaded checkpoint and return it in our format."""
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: expected a checkpoint dict, got {type(raw).__name__}")
    if isinstance(raw.get("model"), dict) and "model_name" in raw:  # ours
        return {**raw, "model": {strip_prefixes(k): v for k, v in raw["model"].items()}}
    if isinstance(raw.get("state_dict"), dict) and "logs" in raw:  # released CAL / WS-DAN
        return released_cal_checkpoint(raw, origin)
    if isinstance(raw.get("model"), dict) and any(strip_prefixes(k).startswith(("fpn.", "combiner."))
                                                  for k in raw["model"]):  # FGVC-PIM backup/best.pt, last.pt
        return released_pim_checkpoint(raw, origin)
    if isinstance(raw.get("model_state_dict"), dict):  # released CUB-GHA
        state, epoch, lr = raw["model_state_dict"], raw.get("epoch"), raw.get("learning_rate")
    elif raw and all(isinstance(v, Tensor) for v in raw.values()):  # a bare state dict
        state, epoch, lr = raw, None, None
    else:
        raise ValueError(_unknown_format(origin, raw))
    state = {strip_prefixes(k): v for k, v in state.items()}
    if any(k.startswith("pretrained_model.") for k in state):
        model_name, backbone, converted = "gat", "backbone.net.", convert_released_gat(state, origin)
    elif any(k.startswith(("pretrained_model1.", "pretrained_model2.")) for k in state):
        model_name, backbone, converted = "kfn", "image_backbone.net.", convert_released_kfn(state, origin)
    elif any(k.startswith("encoder.") for k in state):
        return released_cxr_checkpoint("gat", convert_hafc_cxr(state, {"encoder": "backbone"}, origin), origin)
    elif any(k.startswith("branch1.") for k in state):
        branches = {"branch1": "image_backbone", "branch2": "gaze_backbone"}
        return released_cxr_checkpoint("kfn", convert_hafc_cxr(state, branches, origin), origin)
    else:
        raise ValueError(_unknown_format(origin, state))
    return released_to_checkpoint(model_name, converted, epoch, lr, origin, backbone)


def _unknown_format(origin: str, mapping: dict) -> str:
    keys = list(mapping)[:5]
    return (
        f"{origin}: unknown checkpoint format (first keys {keys}); expected ours "
        "({'model', 'model_name', ...}) or a released CUB-GHA GAT/KFN checkpoint "
        "({'model_state_dict'} with 'pretrained_model.' / 'pretrained_model1.' keys)"
    )


def convert_released_gat(state: dict[str, Tensor], origin: str = "<state dict>") -> dict[str, Tensor]:
    """Released GAT keys -> ours: ``pretrained_model.X`` -> ``backbone.net.X`` (fc dropped),
    ``cls_net.X`` -> ``classifier.X``."""
    converted = {}
    for key, tensor in state.items():
        if key.startswith("pretrained_model.fc."):
            continue
        if key.startswith("pretrained_model."):
            converted["backbone.net." + key[len("pretrained_model."):]] = tensor
        elif key.startswith("cls_net."):
            converted["classifier." + key[len("cls_net."):]] = tensor
        else:
            raise ValueError(f"{origin}: unexpected key {key!r} in a released GAT checkpoint")
    return converted


def convert_released_kfn(state: dict[str, Tensor], origin: str = "<state dict>") -> dict[str, Tensor]:
    """Released KFN keys -> ours: ``pretrained_model{1,2}.{i}.X`` -> ``{image,gaze}_backbone.net.
    {conv1,bn1,layer1-4}.X``, ``cls_net.X`` -> ``classifier.X``."""
    branches = {"pretrained_model1": "image_backbone", "pretrained_model2": "gaze_backbone"}
    converted = {}
    for key, tensor in state.items():
        head, _, rest = key.partition(".")
        if head in branches:
            index, _, name = rest.partition(".")
            if index not in KFN_SEQUENTIAL:
                raise ValueError(
                    f"{origin}: unexpected key {key!r} (Sequential index {index} has no weights)"
                )
            converted[f"{branches[head]}.net.{KFN_SEQUENTIAL[index]}.{name}"] = tensor
        elif head == "cls_net":
            converted["classifier." + rest] = tensor
        else:
            raise ValueError(f"{origin}: unexpected key {key!r} in a released KFN checkpoint")
    return converted


def released_cal_checkpoint(raw: dict, origin: str) -> dict:
    """Our checkpoint of a released CAL / WS-DAN ``{'logs', 'state_dict'[, 'feature_center']}``."""
    state = {strip_prefixes(k): v for k, v in raw["state_dict"].items()}
    converted = {}
    for key, tensor in state.items():
        head, _, rest = key.partition(".")
        if head == "features":
            child, _, name = rest.partition(".")
            child = KFN_SEQUENTIAL.get(child, child)  # a Sequential index, or the ResNet child's own name (HW1)
            if child not in KFN_SEQUENTIAL.values():
                raise ValueError(f"{origin}: unexpected key {key!r}: only ResNet-based CAL / WS-DAN checkpoints "
                                 "(features.<0,1,4-7> or features.<conv1,bn1,layer1-4>) are supported")
            converted[f"backbone.net.{child}.{name}"] = tensor
        elif key == "attentions.conv.weight":
            converted["attention.0.weight"] = tensor
        elif key.startswith("attentions.bn."):
            converted["attention.1." + key[len("attentions.bn."):]] = tensor
        elif key == "fc.weight":
            converted["fc.weight"] = tensor
        else:
            raise ValueError(f"{origin}: unexpected key {key!r} in a CAL / WS-DAN checkpoint")
    for needed in ("fc.weight", "attention.0.weight"):
        if needed not in converted:
            raise ValueError(f"{origin}: a CAL / WS-DAN checkpoint without {needed!r} (first keys {list(state)[:5]})")
    classes, pooled = converted["fc.weight"].shape
    attentions = int(converted["attention.0.weight"].shape[0])
    centre = raw.get("feature_center")
    if centre is not None and tuple(centre.shape) != (classes, pooled):
        raise ValueError(f"{origin}: feature_center has shape {tuple(centre.shape)}, expected {(classes, pooled)} "
                         "(classes x attentions * channels)")
    converted["feature_center"] = centre.float() if centre is not None else converted["fc.weight"].new_zeros(classes, pooled)
    checkpoint = released_to_checkpoint("cal", converted, None, None, origin, "backbone.net.")
    checkpoint["config"] = {**checkpoint["config"], "num_classes": int(classes), "num_attentions": attentions,
                            "output_stride": 16}
    checkpoint["compatible_models"] = ["cal", "wsdan"]
    return checkpoint


#: The published Swin-L selection, the one a combiner's sum(num_selects) = 2720 identifies.
PIM_SWIN_SELECTS = [2048, 512, 128, 32]
#: Embedding width -> Swin size (timm names).
SWIN_SIZES = {96: "tiny", 128: "base", 192: "large"}


def convert_released_pim(state: dict[str, Tensor], origin: str = "<state dict>") -> dict[str, Tensor]:
    """FGVC-PIM keys -> ours (see the module docstring); the backbone's classifier (``head.``,
    ``fc.``, never read by the stages) is dropped; every other key is mapped or an error."""
    moved_merging = any(k.startswith("backbone.layers.0.downsample.") for k in state)  # timm 0.5.4 Swin
    converted = {}
    for key, tensor in state.items():
        head, _, rest = key.partition(".")
        if head == "backbone":
            if rest.startswith(("head.", "fc.")) or rest.endswith(("relative_position_index", "attn_mask")):
                continue  # the 21k classifier; buffers timm >= 0.9 recomputes
            if moved_merging and rest.startswith("layers.") and ".downsample." in rest:
                stage, _, tail = rest[len("layers."):].partition(".")
                rest = f"layers.{int(stage) + 1}.{tail}"
            converted[f"backbone.net.{rest}"] = tensor
        elif head == "fpn" and rest.startswith("Proj_layer"):
            layer, _, tail = rest[len("Proj_layer"):].partition(".")
            converted[f"projections.{int(layer) - 1}.{tail}"] = tensor.flatten(1) if tensor.ndim == 4 else tensor
        elif head == "fpn" and rest.startswith("Up_layer"):
            layer, _, tail = rest[len("Up_layer"):].partition(".")
            converted[f"upsamples.{int(layer) - 2}.{tail}"] = tensor
        elif head.startswith("fpn_classifier_layer"):
            converted[f"classifiers.{int(head[len('fpn_classifier_layer'):]) - 1}.{rest}"] = tensor
        elif head == "combiner":
            converted[key] = tensor
        else:
            raise ValueError(f"{origin}: unexpected key {key!r} in a FGVC-PIM checkpoint")
    return converted


def _pim_backbone(state: dict[str, Tensor], origin: str) -> dict:
    """Config keys of the backbone a converted PIM state dict holds (ResNet or Swin)."""
    from gaze.models.backbones import SWIN_MERGED_STAGES  # timm only where a PIM file is read

    if "backbone.net.layer1.0.conv1.weight" in state:
        return {"backbone": infer_resnet(state, "backbone.net."), "stage_modules": None}  # any input size
    if "backbone.net.layers.0.blocks.0.attn.qkv.weight" in state:
        width = int(state["backbone.net.patch_embed.proj.weight"].shape[0])
        window = (int(state["backbone.net.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]) ** 0.5 + 1) / 2
        size = SWIN_SIZES.get(width)
        if width == 96:
            size = "tiny" if len({k.split(".")[5] for k in state if k.startswith("backbone.net.layers.2.blocks.")}) == 6 \
                else "small"
        if size is None or window not in (7, 12):
            raise ValueError(f"{origin}: a Swin of width {width} and window {window:g} is not one timm names")
        return {"backbone": f"swin_{size}_patch4_window{int(window)}_{224 if window == 7 else 384}",
                "input_size": 224 if window == 7 else 384, "stage_modules": list(SWIN_MERGED_STAGES)}
    if "backbone.net.pos_embed" in state:
        raise ValueError(f"{origin}: a PIM ViT checkpoint: not importable yet (it was fine-tuned on ImageNet-normalised "
                         "inputs; our MIIL ViT converts them to MIIL's own input scale first)")
    if any(k.startswith("backbone.net.features.") for k in state):
        raise ValueError(f"{origin}: a PIM EfficientNet checkpoint (torchvision efficientnet_b7): its parameter names "
                         "do not map onto timm's EfficientNet; not importable")
    raise ValueError(f"{origin}: unrecognised PIM backbone (first keys {list(state)[:5]})")


def released_pim_checkpoint(raw: dict, origin: str) -> dict:
    """Our checkpoint of a FGVC-PIM ``{'model', 'optimizer', 'epoch'}`` (its optimizer is not kept)."""
    state = convert_released_pim({strip_prefixes(k): v for k, v in raw["model"].items()}, origin)
    for needed in ("combiner.classifier.weight", "combiner.param_pool0.weight", "projections.0.2.weight"):
        if needed not in state:
            raise ValueError(f"{origin}: a FGVC-PIM checkpoint without {needed!r} (PIM without its FPN and combiner "
                             "is broken as published and not importable)")
    classes, fpn_size = state["combiner.classifier.weight"].shape
    selected = int(state["combiner.param_pool0.weight"].shape[1])
    config = {"model_type": "pim", "num_classes": int(classes), "fpn_size": int(fpn_size),
              "fpn_upsample": "conv" if any(k.startswith("upsamples.") for k in state) else "bilinear",
              **_pim_backbone(state, origin), "imported_from": origin}
    if selected == sum(PIM_SWIN_SELECTS):  # else the config's num_selects (a key left out is not overridden)
        config["num_selects"] = PIM_SWIN_SELECTS
    epoch = raw.get("epoch")
    return {"model": state, "optimizer": None, "scheduler": None, "scaler": None,
            "epoch": int(epoch) + 1 if epoch is not None else 0,  # PIM saves the 0-based epoch it finished
            "best_metric": None, "model_name": "pim", "config": config, "version": gaze.__version__}


def convert_hafc_cxr(
    state: dict[str, Tensor], branches: dict[str, str], origin: str = "<state dict>"
) -> dict[str, Tensor]:
    """HAFC CXR-Eye keys -> ours: ``<branch>.X`` -> ``<ours>.net.X`` (``conv_head``/``bn2``
    dropped); the one 2-D weight outside the branches (and its bias) -> ``classifier``."""
    converted, head = {}, {}
    for key, tensor in state.items():
        branch, _, rest = key.partition(".")
        if branch in branches:
            if not rest.startswith(("conv_head.", "bn2.")):
                converted[f"{branches[branch]}.net.{rest}"] = tensor
        else:
            head[key] = tensor
    weights = [k for k, v in head.items() if k.endswith("weight") and v.ndim == 2]
    if len(weights) != 1:
        raise ValueError(f"{origin}: not a HAFC CXR-Eye checkpoint: expected one Linear layer outside "
                         f"{sorted(branches)}, found {weights or 'none'} (first keys {list(state)[:5]})")
    bias = weights[0][: -len("weight")] + "bias"
    converted["classifier.weight"] = head.pop(weights[0])
    if bias in head:
        converted["classifier.bias"] = head.pop(bias)
    if head:
        raise ValueError(f"{origin}: unexpected keys {sorted(head)[:5]} in a CXR-Eye checkpoint")
    return converted


def released_cxr_checkpoint(model_name: str, state: dict[str, Tensor], origin: str) -> dict:
    """Our checkpoint dict around converted HAFC CXR-Eye weights (EfficientNet encoders, 3 classes)."""
    return {
        "model": state, "optimizer": None, "scheduler": None, "scaler": None, "epoch": 0,
        "best_metric": None, "model_name": model_name,
        "config": {"model": model_name, "num_classes": int(state["classifier.weight"].shape[0]),
                   "encoder_only": True, "imported_from": origin},
        "version": gaze.__version__,
    }


def infer_resnet(state: dict[str, Tensor], prefix: str) -> str:
    """The ResNet name ('resnet50', ...) of the weights under ``prefix``, from its block counts."""
    blocks = []
    for stage in range(1, 5):
        stage_prefix = f"{prefix}layer{stage}."
        indices = {k[len(stage_prefix):].split(".")[0] for k in state if k.startswith(stage_prefix)}
        blocks.append(len(indices))
    kind = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in state else "basic"
    name = RESNET_DEPTHS.get((kind, tuple(blocks)))
    if name is None:
        raise ValueError(f"unrecognised ResNet ({kind} blocks {blocks}) under {prefix!r}")
    return name


def released_to_checkpoint(model_name: str, state: dict[str, Tensor], epoch, lr, origin: str,
                           backbone_prefix: str) -> dict:
    """Wrap a converted state dict as our checkpoint dict (config inferred from the weights,
    the ResNet depth from the blocks under ``backbone_prefix``)."""
    head = state["classifier.weight"] if "classifier.weight" in state else state["fc.weight"]
    config = {
        "model_type": model_name,  # the names of cub/config.py
        "backbone": infer_resnet(state, backbone_prefix),
        "num_classes": int(head.shape[0]),
        "imported_from": origin,
    }
    if lr is not None:
        config["init_lr"] = float(lr)
    return {
        "model": state,
        "optimizer": None,
        "scheduler": None,
        "scaler": None,
        "epoch": int(epoch) if epoch is not None else 0,
        "best_metric": None,
        "model_name": model_name,
        "config": config,
        "version": gaze.__version__,
    }


def read_checkpoint(checkpoint: str | Path | dict) -> tuple[dict, str]:
    """(the checkpoint in our format, its origin for messages) of a path or a loaded dict."""
    origin = checkpoint_origin(checkpoint)
    if isinstance(checkpoint, dict):
        return convert_checkpoint(checkpoint, origin), origin
    return import_checkpoint(checkpoint), origin


def load_model_checkpoint(model: nn.Module, checkpoint: str | Path | dict, strict: bool = True) -> dict:
    """Load the weights of any checkpoint (ours or released) into ``model``.

    Raises:
        ValueError: the checkpoint holds another model (by ``model_name``), a tensor shape
            differs (the key is named), or keys are missing/unexpected when ``strict``.

    Returns:
        The checkpoint in our format.
    """
    ckpt, origin = read_checkpoint(checkpoint)
    expected = getattr(model, "name", type(model).__name__.lower())
    if expected not in ckpt.get("compatible_models", [ckpt["model_name"]]):
        raise ValueError(
            f"{origin}: the checkpoint holds a {ckpt['model_name']!r} model, the model is {expected!r}"
        )
    load_state_dict(model, ckpt["model"], origin, strict=strict, allow_unexpected=not strict)
    return ckpt

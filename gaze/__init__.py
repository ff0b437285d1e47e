"""gaze: fine-grained image classification guided by human attention (eye-tracking).

Subpackages by job (DESIGN.md §1): ``attention`` (fixation files, attention maps, saliency,
CUB-GHA, EGD-CXR), ``data`` (images, splits, caches, transforms), ``models`` (registry,
backbones, GAT, KFN, GG-CAM, baseline), ``engine`` (fit, checkpoints, importers, DDP,
logging), ``viz`` (plots, reports, panels) and ``synthetic`` (the demo sets). ``cub/`` and
``cxr/`` build their experiments on them.
"""

__version__ = "0.1.0"

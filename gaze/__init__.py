"""gaze: fine-grained image classification guided by human attention (eye-tracking).

Modules: ``fixations`` (read fixation files), ``heatmap`` (fixations -> attention maps),
``saliency`` (map metrics), and the training pieces used by ``cub/`` and ``cxr/``.
"""

__version__ = "0.1.0"

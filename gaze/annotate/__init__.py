"""The attention annotation app: people rate a model's Grad-CAM and draw masks; answers feed GRADIA's phase 2."""

"""Training and evaluation: the fit loop, checkpoints, released-checkpoint importers, DDP, logging."""

"""CUB-200-2011 + CUB-GHA: dataset, configs and the train/evaluate scripts."""

"""CXR-Eye (EGD-CXR on MIMIC-CXR): splits, dataset, configs and the train/evaluate scripts."""

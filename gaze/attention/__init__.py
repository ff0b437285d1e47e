"""Human attention, no training code: fixation files, attention maps, saliency metrics, CUB-GHA, EGD-CXR."""

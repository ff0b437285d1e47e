# GG-CAM with a ResNet-50 (cxr.md §3): from scratch, GG-CAM's input recipe (preprocessing='pad_subsample':
# the film zero-padded centred to 3072x2560, every 2nd pixel -> 1536x1280, / max, no mean/std;
# the gaze blurred as Blur500 and point-sampled on the 48x40 CAM grid), batch 4, Adam 5e-3,
# the published initial log sigmas (7, -23), ReduceLROnPlateau (x0.1, patience 40) on the
# whole validation loss with a reload of the best weights on every drop, stop after 83 epochs
# without improvement (or lr < 1e-8, or 1024 epochs), the per-class 70/10/20 split (seed 0,
# fraction 1.0: the shipped 0.01 was a bug). Needs a GPU; amp must be bf16, not fp16 (the
# initial loss weights reach 1e13-1e19).
#   python cxr/train.py cxr/configs/ggcam_resnet.py --mimic_root=... --egd_dir=... --device=cuda
# Not the published network: timm's resnet50 (max-pool after the stem, stride 2 in stages 2-4) stands in for the published
# ResNet50-like net (no max-pool, a biased stem conv, stride 2 in the first block of every stage).
# Protocol: ours (the true class's CAM is matched to the gaze; the split is patient-disjoint).
# --protocol=published: the Normal-class CAM for every label and the per-image split
# (cxr/published.py); the README's table lists every difference.
model_type = 'ggcam'
backbone = 'resnet50'
pretrain_path = None
input_hw = [1536, 1280]
preprocessing = 'pad_subsample'      # the published input and gaze target (cxr §3.1)
batch_size = 4
split = 'ggcam'
end_epoch = 1024
init_lr = 5e-3
lr_schedule = 'plateau'
plateau_patience = 40
early_stop_patience = 83
cam_target = 'true'
amp = 'bf16'

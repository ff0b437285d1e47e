# CXR-Eye (MIMIC-CXR-JPG + EGD-CXR gaze): defaults of `python cxr/train.py` and `python cxr/evaluate.py`.
#
# Plain assignments only. Override them with files (`python cxr/train.py cxr/configs/ggcam_effnet.py`)
# and `--key=value` (`python cxr/train.py --model_type=ggcam --backbone=resnet50`); unknown keys are
# an error that names the closest key. Relative paths are relative to the repository root.
#
# These defaults are the embedded CPU demo: the SYNTHETIC CXR-Eye miniature of gaze.synthetic.cxr
# (generated on first use into data/synthetic_cxr), EfficientNet-Lite0 with real ImageNet
# weights at 112 px, 4 epochs (the window CE in the last two), 5-fold patient-level cross-validation. The papers' settings are in
# cxr/configs/ (hafc_gat.py, hafc_kfn.py: EfficientNet-b0 224 px 60 epochs; ggcam_effnet.py,
# ggcam_resnet.py: 1536x1280 from scratch); the published value of every knob is in its
# comment (specs: cxr.md §2.6, §3.5).

# --- protocol
protocol = 'ours'             # 'ours' (the corrected defaults) | 'published': the method's published protocol on top, defects included (cxr/published.py; warned, run name + '_published')

# --- method
model_type = 'gat'            # a registered model (`--help` lists them; HAFC: gat / kfn; GG-CAM: ggcam)
backbone = 'tf_efficientnet_lite0'  # any timm name; HAFC: 'efficientnet_b0' (smp's timm-efficientnet-b0 is this timm architecture, with the TF-ported weights); GG-CAM: 'efficientnetv2_s' | 'resnet50'
pretrain_path = 'default'     # local weight file or package alias; None = from scratch; 'default': the package's real ImageNet weights for tf_efficientnet_lite0 (GAT/KFN/baseline; HAFC used ImageNet), from scratch for GG-CAM (as published) and other backbones
encoder_only = True           # GAT/KFN/baseline: stop at the last stage like the smp encoders (b0: 320 channels, cxr §2.3)
dropout = 0.0                 # GAT/baseline head dropout (HAFC scripts: 0.0; argparse default 0.5)
drop_path_rate = 0.0          # GAT/KFN/baseline: stochastic depth of the backbone (HAFC's smp timm-efficientnet-b0 encoder: 0.2)
head_init = 'default'         # GAT/KFN/baseline classifier: 'default' (nn.Linear) | 'xavier' (xavier-uniform, zero bias: smp's ClassificationHead of HAFC's GAT)
window_preset = 'cxr'         # GAT window geometry: 'cxr' (HAFC: 224-px reference, stride 2, cxr §2.3) | 'cub' (448-px reference, stride 8)
gaze_threshold = 0.3          # HAFC mask minmax(map) > 0.3: KFN's masked image and GAT's window map y_hm = map * mask (cxr §2.1); None: the map itself
phase_epochs = None           # GRADIA: epochs of each phase, e.g. [2, 2]; None: end_epoch shared equally
phase = None                  # GRADIA: run only this phase (2: fine-tune from init_from); None: all
phase_select_metrics = None   # phased methods: select_metric of each phase; None: the method's recipe (GRADIA: ['top1', 'attention_iou'], phase 2 as published but on validation), else select_metric in every phase
ratings = None                # GRADIA: reasonablity_val.json ({"<dicom_id or file name>": "Reasonable Accurate", ...}, e.g. the annotation app's export): in each fold, phase 2 trains on train + the fold's rated val images (<fold>/p2_train.csv) with the rating weights
masks_dir = None              # GRADIA: drawn masks <masks_dir>/<dicom_id>.png, any size (the annotation app's export); images without one use their gaze map thresholded (gaze_threshold)
attention_samples = 'all'     # GRADIA phase 2: 'all' (every image with a mask: CXR-Eye gives each one) | 'rated' (published: only images rated UI/UA/RI get the attention loss)
window_crop = 'scored'        # GAT: 'scored' crops exactly the scored window | 'published': one pixel up/left and larger (cxr §2.3)
window_loss_from_epoch = 3    # GAT: the window CE joins from this 1-based epoch (published: `if epoch < 2` on 0-based epochs, i.e. from the third; cxr §2.3)
init_from = None              # start every fold from this checkpoint of the same model (KFN: a GAT one initialises both branches); a resumed fold continues from its own checkpoint
pretrained_dir = None         # KFN: start fold k from that fold's GAT checkpoint: <dir>/fold<k>/ckpt_best.pt (ours) or <dir>/<k>_fold/best.pth (HAFC)
cam_target = 'true'           # GG-CAM: 'true' = CAM of the true class matched to the gaze (fix); 'class0' = published (always the Normal CAM, cxr §3.4)
ggcam_use_gaze = True         # GG-CAM: False = the gaze-free CAM network (plain CE), the paper's baseline
log_sigma_ce = 7.0            # GG-CAM initial log sigma_c (published 7)
gaze_sampling = None          # GG-CAM's CAM-grid target: 'area' (cell means) | 'point' (every stride-th pixel, published); None: 'point' with preprocessing='pad_subsample', else 'area'
log_sigma_gaze = None         # GG-CAM initial log sigma_d; None: published -16 (EfficientNet) / -23 (ResNet)

# --- data (see cxr/dataset.py)
mimic_root = 'data/synthetic_cxr/mimic-cxr-jpg'  # MIMIC-CXR-JPG folder holding files/pXX/...; the default is the synthetic demo, made on first use
egd_dir = 'data/synthetic_cxr/egd-cxr'           # EGD-CXR folder with master_sheet.csv and fixations.csv (physionet egd-cxr/1.0.0)
gaze_source = 'fixations'     # 'fixations': render fixations.csv (the dataset's recipe) | 'heatmaps': read <heatmaps_dir>/<dicom_id>/heatmap.png
heatmaps_dir = None           # None: <egd_dir>/fixation_heatmaps
heatmap_png_mode = 'viridis'  # 'viridis' (decode the colour map) | 'luma' (published grey reading, ~0.12 background)
gaze_sigma = None             # Gaussian sd in image px; None: 150 px at the 3056-px DICOM scale (cxr §1.4; 'pad_subsample' preprocessing: 75.5 px), scaled to each image
gaze_duration_weighted = False  # the dataset's recipe counts fixations (+1 each); True weights by duration
gaze_calibrate = False        # shift gaze by the calibration images' offset (cxr §1.3; off as published)
gaze_cache_dir = None         # folder to keep rendered/decoded maps across runs (None: memory only)
preprocessing = 'resize'      # 'resize': squash-resize, ImageNet normalisation, the gaze map resized (HAFC; GG-CAM target area-averaged) | 'pad_subsample': GG-CAM's published recipe (film zero-padded centred to 2x the input, every 2nd pixel, / max, no mean/std; gaze = fixation dots blurred as cv2 Blur500, sd 75.5 px, point-sampled every 32 input px, / max)
input_size = 112              # square input side in px (HAFC: 224)
input_hw = None               # [H, W] for a non-square input, replacing input_size (GG-CAM: [1536, 1280], a 48x40 CAM grid)
augment = False               # mild affine + brightness/contrast on training images (published: none)
jpeg_draft = True             # 'resize' preprocessing: let the JPEG decoder downscale in the DCT domain first (fast); False: full decode (published)
batch_size = 16               # HAFC: 32; GG-CAM: 4
workers = 0                   # DataLoader worker processes (HAFC: 12)

# --- patient splits (cxr/prepare.py); written to <run>/splits.csv
split = 'cv'                  # patient split protocol: 'cv' (HAFC 5-fold by patient) | 'holdout' (EGD 80/10/10 by patient) | 'ggcam' (per-class 70/10/20)
folds = 5
rseed = None                  # patient shuffle seed; None: the split's published one (cv: 1 as in the HAFC paper; holdout: EGD's 42)
val_fraction = 0.1            # CV: validation patients carved from each fold's training patients (model selection); 0: none, the last epoch is kept
select_on_test = False        # CV: the papers' protocol, best epoch chosen ON THE TEST FOLD (optimistic; warned)
ggcam_fraction = 1.0          # 'ggcam' split: fraction of each split kept (published file: 0.01, a bug)
ggcam_seed = 0
ggcam_patient_disjoint = True  # 'ggcam' split: every patient's images follow its first image (fix); False: per-image CSV order as published
run_folds = None              # run only these folds, e.g. [0] (None: all)

# --- optimisation (None = the method's published value)
end_epoch = 4                 # HAFC: 60; GG-CAM: up to 1024 with early stopping
optimizer = 'adam'            # HAFC and GG-CAM: Adam
init_lr = None                # None: HAFC 5e-4 (gat/kfn/baseline), GG-CAM 6e-3 (EfficientNet) / 5e-3 (ResNet)
weight_decay = 0.0            # HAFC's --weight_decay was unused; GG-CAM uses none
lr_schedule = None            # None: HAFC 'multistep' [50] x0.1; GG-CAM 'plateau' (patience 40, x0.1, reload best)
lr_milestones = [50]
lr_decay_rate = 0.1
plateau_patience = 40
early_stop_patience = None    # None: HAFC none; GG-CAM 83 epochs without improvement
warmup_epochs = 0.0
amp = None                    # None | 'bf16' | 'fp16' (CUDA only; GG-CAM needs bf16: its loss weights reach 1e19)
accumulate_steps = 1          # batches per optimizer step (the gradient of the mean loss over the group: batch_size x this)

# --- run
model_path = 'runs/cxr'       # run directory = model_path/model_name (HAFC: checkpoint/<model>_crossv-<bool>_rseed<r>)
model_name = None             # None: '<model>_<split>_rseed<rseed>' (+ '_published' with protocol='published')
device = 'auto'               # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'mps'
dist_timeout_minutes = 10.0    # torchrun: a rank waits this long for the others, then the run stops naming the ranks that froze
sync_bn = False               # torchrun on CUDA: BatchNorm statistics over all processes (SyncBatchNorm; CAL's recipe)
seed = 1                      # torch/NumPy/random seed (HAFC: = rseed)
resume = True                 # True: continue each fold from its ckpt_last.pt (same result as one run); False: start afresh, moving a fold's previous run to fold<k>.previous-<time>
log_interval = 20
gcam_viz = False              # write Grad-CAM panels (image, gaze overlay, CAM per branch) for test images of each fold
cam_images = 4

# --- evaluation
select_metric = None          # validation metric choosing each fold's best epoch: 'top1' | 'top5' | 'loss' | a model's metric ('attention_iou' for GRADIA); None: HAFC 'top1', GG-CAM 'loss'
eval_protocol = 'single'      # how validation and test images are scored: 'single' (one view; published) | 'flip' (+ its mirror, mean logits)
checkpoint_dir = None         # a run of ours (fold<k>/ckpt_best.pt) or a HAFC output dir (<k>_fold/best.pth); None: this config's run
eval_dir = None               # None: <checkpoint_dir>/evaluation
assessments = None            # evaluate.py (GRADIA): people's verdicts on the evaluated model's attention, GRADIA's [{"img", "label": "unreasonable" | other}] or a reasonablity_test.json (keys: dicom_ids or file names): each fold's reasonability matrix

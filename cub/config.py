# CUB-200-2011 + CUB-GHA: defaults of `python cub/train.py` and `python cub/evaluate.py`.
#
# Plain assignments only. Override them with files (`python cub/train.py cub/configs/gat_r50.py`)
# and `--key=value` (`python cub/train.py --model_type=kfn --batch_size=8`); unknown keys are
# an error that names the closest key. Relative paths are relative to the repository root.
#
# These defaults are the embedded CPU demo: the SYNTHETIC CUB-layout dataset of gaze.synthetic.cub
# (generated on first use into data/synthetic_cub), EfficientNet-Lite0 with real ImageNet
# weights at 112 px, ten epochs: it trains and evaluates in minutes on 2 CPU cores. The
# paper's setting (ResNet-50, 448 px, 150 epochs, real CUB) is cub/configs/gat_r50.py and
# cub/configs/kfn_r50.py; the published value of every knob is given in its comment
# (specs: cub_pim.md §1.3).

# --- protocol
protocol = 'ours'             # 'ours' (the corrected defaults) | 'published': the method's published protocol on top, defects included (cub/published.py; warned, run name + '_published')

# --- method
model_type = 'gat'            # a registered model (`--help` lists them; published: 'gat', 'kfn')
backbone = 'tf_efficientnet_lite0'  # any timm name; published: 'resnet50'
pretrain_path = 'package:efficientnet-lite0'  # ImageNet weights, a local file or package alias; published: './pretrained/resnet50-19c8e357.pth'; None = random init
init_from = None              # start from this checkpoint (ours or a released best.pth) of the same model; KFN also takes a GAT one (both branches); a resumed run continues from its own checkpoint
GAT_pretrained = None         # the published name of init_from for KFN: both branches from this GAT checkpoint; published: False / '<gat>/best/best.pth'
dropout = None                # on the pooled embedding; None: the method's published value (GAT, baseline: 0.5; KFN: 0)
gaze_threshold = None         # HAFC's mask minmax(map) > t (cxr §2.1): KFN's masked image, GAT's window map, GRADIA's mask from gaze; None: the map itself (GAT, KFN as published), 0.3 (GRADIA)
phase_epochs = None           # GRADIA: epochs of each phase, e.g. [5, 5]; None: end_epoch shared equally
phase = None                  # GRADIA: run only this phase (2: fine-tune from init_from); None: all
phase_select_metrics = None   # phased methods: select_metric of each phase; None: the method's recipe (GRADIA: ['top1', 'attention_iou'], phase 2 as published but on validation), else select_metric in every phase
ratings = None                # GRADIA: reasonablity_val.json ({"<image id or file name>": "Reasonable Accurate", ...}, e.g. the annotation app's export): phase 2 trains on train + the rated val images (<run>/p2_train.csv) with the rating weights
masks_dir = None              # GRADIA: drawn masks <masks_dir>/<image id>.png, any size (the annotation app's export); images without one use their gaze map thresholded (gaze_threshold)
attention_samples = 'all'     # GRADIA phase 2: 'all' (every image with a mask: CUB-GHA gives each one) | 'rated' (published: only images rated UI/UA/RI get the attention loss)
fpn_size = None               # PIM: FPN width F; None: 512 (published: 1536 for Swin-L)
num_selects = None            # PIM: tokens kept per stage, e.g. [2048, 512, 128, 32] (Swin-L 384); None: the published fractions of each stage's tokens
fpn_upsample = None           # PIM: 'bilinear' (CNNs, published for ResNet/EfficientNet) | 'conv' (token-axis Conv1d: Swin, ViT); None: 'bilinear'
stage_modules = None          # PIM: timm module names read as the four stages, e.g. the published Swin's ['layers.1.downsample', 'layers.2.downsample', 'layers.3.downsample', 'layers.3']; None: the last four features_only stages
lambda_b = 0.5                # PIM loss weights (published 0.5 / 0 / 5 / 1): token-mean CE of every stage,
lambda_s = 0.0                #   CE of the selected tokens,
lambda_n = 5.0                #   MSE(tanh(dropped logits), -1),
lambda_c = 1.0                #   CE of the combiner
lambda_g = 0.0                # PIM gaze-guided selector (ours): weight of MSE(selector confidence per stage, the gaze map on its grid); 0: off as published; > 0: training batches carry gaze
num_attentions = 32           # CAL / WS-DAN: attention maps M (published 32)
beta = 0.05                   # CAL / WS-DAN: centre update rate (published 0.05)
output_stride = None          # CAL / WS-DAN: backbone output stride; None: 16 (ResNet layer4 at stride 1 as published: 28x28 at 448); 32: the network's own (WS-DAN's ResNet)
attention_source = 'model'    # CAL / WS-DAN crops and drops by: 'model' (its attention maps, published) | 'gaze' (the human gaze map) | 'mixed' (each map the gaze with probability 1/2)
gaze_alignment = 0.0          # CAL / WS-DAN: weight of an L1 between the mean attention map and the gaze map (0: none, published)
feature_stage = None          # CAL / WS-DAN: pool this timm features_only stage instead of the last (Inception-v3: 3 = Mixed_6e, WS-DAN's default)
masked_image_crop = 'shared'  # KFN: 'shared' (image and masked image share one crop and flip) | 'independent' (published: drawn apart, cub_pim §1.7)

# --- data
root = 'data/synthetic_cub'   # the CUB_200_2011 folder; the default is the synthetic demo, made on first use
GHA_dir = None                # attention maps <root>/<GHA_dir>/<id>.jpg (published: 'CUB_GHA'; generate_heatmap.py writes 'CUB_GHA/All_Fixation')
gaze_fixations = 'gaze'       # used when GHA_dir is None: fixation file(s)/folder (relative to root, or absolute) rendered on the fly
gaze_sigma = None             # on-the-fly maps: Gaussian sd in image pixels (None: 75 screen px seen in the image, see gaze.attention.heatmap)
gaze_min_duration = 100.0     # on-the-fly maps: drop fixations shorter than this, ms (CUB-GHA README)
gaze_missing = 'error'        # images of the split without gaze: 'error' | 'uniform' (a map of ones: GAT scores all windows alike, KFN sees the image)
num_classes = 10              # published: 200 (checked against the data)
val_fraction = 0.1            # validation split carved from the training images (model selection); 0: train on all 5,994, keep the last epoch
select_on_test = False        # True: train on all training images and pick the best epoch ON THE TEST SET, as published (optimistic; warned)
input_size = 112              # published: 448
color_jitter = None           # training [brightness, contrast(, saturation)] jitter on the image; None: the method's published recipe (GAT, baseline: [0.2, 0.2]; KFN: none; CAL: [0.126, 0, 0.5]); [0, 0]: none
transforms = None             # 'cub' (resize the shorter side to input_size, random crop, flip, jitter: CUB-GHA's) | 'pim' (PIM's: squash to input_size x 510/384, random crop, flip, blur p 0.1, sharpness p 0.1; test centre crop); None: the method's recipe (PIM: 'pim'), else 'cub'
batch_size = 16               # per process (published: 6 for GAT, 8 for KFN)
workers = 0                   # DataLoader worker processes, 0 = in the main process (published: 8; the demo's images are tiny)

# --- optimisation (published: SGD momentum 0.9, lr 1e-3, wd 1e-4, MultiStepLR [50, 100] x0.1, 150 epochs)
end_epoch = 10                # published: 150
optimizer = None              # 'sgd' | 'adam' | 'adamw'; None: the method's recipe (GG-CAM: 'adam'), else 'sgd'
init_lr = None                # None: the method's recipe (GG-CAM: 6e-3 EfficientNet / 5e-3 ResNet), else 0.01; published: 1e-3
momentum = 0.9
nesterov = None               # SGD with Nesterov momentum; None: the method's recipe (PIM: True), else False
weight_decay = 1e-4
lr_schedule = None            # 'multistep' (published) | 'cosine' | 'constant' | 'plateau' | 'cal_exponential'; None: the method's recipe (GG-CAM: 'plateau'; CAL: 'cal_exponential'), else 'cosine'
lr_milestones = [50, 100]     # multistep: epochs after which lr *= lr_decay_rate
lr_decay_rate = 0.1
warmup_epochs = 0.0           # linear warm-up, in epochs
warmup_steps = None           # ... or over this many optimizer steps (PIM's warmup_batchs: 800 batches / update_freq 2); None: warmup_epochs
amp = None                    # None | 'bf16' | 'fp16' (CUDA only)
accumulate_steps = 1          # batches per optimizer step (the gradient of the mean loss over the group: batch_size x this)

# --- GAT windows (cub_pim.md §1.3-1.5): sizes in px at 448 input, scaled to input_size
stride = 8                    # window stride (published: 8)
ratios = [[[246, 269], [269, 246]],                                 # large  (~257^2)
          [[174, 190], [190, 174], [174, 174], [190, 190]],          # medium (~182^2)
          [[123, 134], [134, 123], [123, 123], [134, 134]]]          # small  (~128^2); [h, w] px
N_list = [2, 3, 4]            # windows kept per scale (large, medium, small)
iou_threshs = [0.25, 0.25, 0.25]  # NMS IoU per scale; one threshold for all scales is supported (the paper's are equal)
window_side = None            # side of the resized window crops; None: input_size // 2 (224 at 448 as published; the published key of this name was unused)
window_crop = 'scored'        # 'scored': crop exactly the scored window | 'published': one pixel up/left and larger (cub_pim §1.4)
window_loss_from_epoch = 2    # the window CE joins the loss from this 1-based epoch (published: `if epoch < 2` on 1-based epochs, i.e. from the second; cub_pim §1.5)

# --- run
model_path = 'runs/cub'       # run directory = model_path/model_name (published: './checkpoint')
model_name = None             # None: '<model_type>_demo' (+ '_published' with protocol='published'), e.g. runs/cub/gat_demo; published: 'gat'
device = 'auto'               # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
dist_timeout_minutes = 10.0    # torchrun: a rank waits this long for the others, then the run stops naming the ranks that froze
sync_bn = False               # torchrun on CUDA: BatchNorm statistics over all processes (SyncBatchNorm; CAL's recipe)
seed = 1142                   # published: 1142
resume = True                 # True: continue from <run>/ckpt_last.pt when present (same result as one run); False: start afresh, moving a previous run in the folder to <run>.previous-<time>
log_interval = 20             # steps between log lines when not on a terminal
cam_images = 6                # Grad-CAM panels (image, human attention, model CAM) written for this many test images

# --- evaluation
select_metric = None          # validation metric choosing the best epoch: 'top1' | 'top5' | 'loss' | a model's metric ('attention_iou' for GRADIA); None: the method's recipe (GG-CAM: 'loss'), else 'top1'
eval_protocol = 'single'      # how validation and test images are scored: 'single' (resize + centre crop, one view; published) | 'flip' (+ its mirror, mean logits) | CAL: 'raw', 'raw+crop' (published validation), 'cal_tta' (published infer.py); CAL also reports all three at the end
checkpoint = None             # checkpoint to evaluate (ours or a released best.pth); None: <model_path>/<model_name>/ckpt_best.pt
eval_dir = None               # where evaluate.py writes; None: <checkpoint folder>/evaluation
assessments = None            # evaluate.py (GRADIA): people's verdicts on the evaluated model's attention, GRADIA's [{"img", "label": "unreasonable" | other}] or a reasonablity_test.json (keys: image ids or file names): the reasonability matrix

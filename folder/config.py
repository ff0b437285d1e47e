# Any ImageFolder dataset (root/{train,val,test}/<class>/*.jpg): defaults of `python folder/train.py`
# and `python folder/evaluate.py`.
#
# Plain assignments only. Override them with files and `--key=value`
# (`python folder/train.py --model_type=gradia --root=gender_data --attention_dir=.`); unknown keys
# are an error that names the closest key. Relative paths are relative to the repository root.
#
# These defaults are the embedded CPU demo: a SYNTHETIC set in exactly GRADIA's layout
# (gaze.synthetic.gradia, generated on first use into data/synthetic_gradia: two classes decided
# by a small striped square, its masks in attention_val/test.json, random ratings in
# reasonablity_val.json), GRADIA on EfficientNet-Lite0 with real ImageNet weights at 112 px.
# GRADIA's published setting: ResNet-50 (torchvision ImageNet weights), 224 px, batch 100,
# Adam 1e-4, 50 epochs a phase (gradia_cal.md A4-A9).

# --- protocol
protocol = 'ours'             # 'ours' (the corrected defaults) | 'published': the method's published protocol on top (folder/published.py; warned, run name + '_published')

# --- method
model_type = 'gradia'         # a registered model (`--help` lists them)
backbone = 'tf_efficientnet_lite0'  # any timm name; GRADIA: 'resnet50'
pretrain_path = 'package:efficientnet-lite0'  # ImageNet weights, a local file or package alias; None = random init
init_from = None              # start from this checkpoint (ours or a released format) of the same model; a resumed run continues from its own checkpoint
dropout = None                # head dropout; None: the method's (GRADIA: none)
fpn_size = None               # PIM: FPN width F; None: 512 (published: 1536 for Swin-L)
num_selects = None            # PIM: tokens kept per stage, e.g. [2048, 512, 128, 32] (Swin-L 384); None: the published fractions of each stage's tokens
fpn_upsample = None           # PIM: 'bilinear' (CNNs, published for ResNet/EfficientNet) | 'conv' (token-axis Conv1d: Swin, ViT); None: 'bilinear'
stage_modules = None          # PIM: timm module names read as the four stages, e.g. the published Swin's ['layers.1.downsample', 'layers.2.downsample', 'layers.3.downsample', 'layers.3']; None: the last four features_only stages
lambda_b = 0.5                # PIM loss weights (published 0.5 / 0 / 5 / 1): token-mean CE of every stage,
lambda_s = 0.0                #   CE of the selected tokens,
lambda_n = 5.0                #   MSE(tanh(dropped logits), -1),
lambda_c = 1.0                #   CE of the combiner
num_attentions = 32           # CAL / WS-DAN: attention maps M (published 32; HW1: 16)
beta = 0.05                   # CAL / WS-DAN: centre update rate
output_stride = None          # CAL / WS-DAN: backbone output stride; None: 16
feature_stage = None          # CAL / WS-DAN: pool this timm features_only stage instead of the last
gaze_threshold = None         # masks from gaze maps: minmax(map) > t (unused by ImageFolder data, which has drawn masks)
phase_epochs = None           # GRADIA: epochs of each phase, e.g. [5, 5]; None: end_epoch shared equally
phase = None                  # GRADIA: run only this phase (2: fine-tune from init_from with the ratings and masks); None: all
phase_select_metrics = None   # phased methods: select_metric of each phase; None: the method's recipe (GRADIA: ['top1', 'attention_iou'], phase 2 as published but on validation), else select_metric in every phase

# --- data
layout = 'imagefolder'        # 'imagefolder' (root/{train,val,test}/<class>/) | 'pim' (PIM's: train/<class>/ and test/<class>/, validation carved from train) | 'cars' (Stanford Cars, cars_annos.mat) | 'aircraft' (FGVC-Aircraft) | 'nycu_hw1' (NYCU VRDL HW1: its test images are unlabelled, answer.txt is written for them)
train_dir = None              # layout 'pim': the training ImageFolder (PIM's train_root); None: root/train
test_dir = None               # layout 'pim': the test ImageFolder (PIM's val_root, which is its test set); None: root/test
num_classes = None            # None: the data's class count; set (e.g. by a PIM YAML): checked against the data
val_fraction = 0.1            # layouts without a validation split: this fraction of the training images (stratified, seeded) selects the best epoch
answer_path = None            # nycu_hw1: where answer.txt goes ("<file> <class name>" in testing_img_order.txt order); None: <run>/answer.txt
transforms = 'resize'         # 'resize' (GRADIA's: resize to input_size, flip, ImageNet normalisation) | 'hw1' (NYCU HW1's: resize 324/300 x input_size, rotation 20, flip, random crop; its own mean/std) | 'pim' (PIM's: squash to resize_size, random crop, flip, blur p 0.1, sharpness p 0.1; test centre crop)
resize_size = None            # transforms 'pim': the square resize side; None: input_size * 510/384 (published: 510 at 384 px)
root = 'data/synthetic_gradia'  # the ImageFolder root with train/ val/ test/ (GRADIA: gender_data); a folder named synthetic* is generated
attention_dir = None          # folder of GRADIA's attention_val.json, attention_val_update.json, attention_val_remove.json, attention_test.json (each optional); None: root (layout 'pim': none)
ratings = None                # reasonablity_val.json (the published file name); None: <attention_dir>/reasonablity_val.json when present
masks_dir = None              # PNG masks <masks_dir>/<image id>.png, any size (what the annotation app exports); they replace the JSON masks of the same image
attention_samples = 'rated'   # GRADIA phase 2: 'rated' (published: only images rated UI/UA/RI get the attention loss) | 'all' (every image with a mask)
input_size = 112              # GRADIA: 224
batch_size = 16               # per process (GRADIA README: 100)
workers = 0                   # DataLoader worker processes

# --- optimisation (None = the method's recipe: GRADIA Adam 1e-3, published 1e-4)
end_epoch = 10                # both phases together unless phase_epochs (GRADIA README: 50 a phase)
optimizer = None              # 'sgd' | 'adam' | 'adamw'; None: the method's recipe, else 'sgd'
init_lr = None                # None: the method's recipe, else 0.01
momentum = 0.9
nesterov = None               # SGD with Nesterov momentum; None: the method's recipe (PIM: True), else False
weight_decay = 0.0            # GRADIA: Adam's default, none
lr_schedule = None            # None: 'constant' (GRADIA) | a registered schedule
lr_milestones = [50, 100]
lr_decay_rate = 0.1
warmup_epochs = 0.0
warmup_steps = None           # ... or over this many optimizer steps (PIM's warmup_batchs: 800 batches / update_freq 2); None: warmup_epochs
amp = None                    # None | 'bf16' | 'fp16' (CUDA only)
accumulate_steps = 1          # batches per optimizer step
select_metric = 'top1'        # validation metric choosing each phase's best epoch: 'top1' (GRADIA phase 1) | 'attention_iou' (phase 2 published, there on the test set: G4) | 'loss'

# --- run
model_path = 'runs/folder'    # run directory = model_path/model_name
model_name = None             # None: '<model_type>' (+ '_published' with protocol='published')
device = 'auto'               # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'mps'
dist_timeout_minutes = 10.0   # torchrun: a rank waits this long for the others
sync_bn = False               # torchrun on CUDA: BatchNorm statistics over all processes (SyncBatchNorm; CAL's recipe)
seed = 0
resume = True                 # True: continue from <run>/<phase>/ckpt_last.pt (same result as one run); False: start afresh, moving a previous run aside
log_interval = 20
cam_images = 4                # Grad-CAM panels and BONE overlays written for this many test images

# --- evaluation
eval_protocol = 'single'      # 'single' (resize, one view; published) | 'flip' (+ its mirror, mean logits)
checkpoint = None             # folder/evaluate.py: the checkpoint; None: this config's run (its last phase)
eval_dir = None               # folder/evaluate.py writes here; None: <checkpoint folder>/evaluation
assessments = None            # folder/evaluate.py: human assessments of the evaluated attention, a JSON list of {"img", "label": "unreasonable" | other}: the reasonability matrix

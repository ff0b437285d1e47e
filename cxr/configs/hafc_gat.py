# HAFC GAT on CXR-Eye as published (cxr.md §2.3-2.6, run_train.sh): EfficientNet-b0 encoder
# (ImageNet weights from a local file), 224 px, 5-fold CV by patient with --rseed 1, Adam
# 5e-4, MultiStepLR [50] x0.1, 60 epochs, batch 32, no augmentation, dropout 0.
#   python cxr/train.py cxr/configs/hafc_gat.py --mimic_root=/data/mimic-cxr-jpg --egd_dir=/data/egd-cxr/1.0.0
# Differences kept on purpose: the best epoch is chosen on validation patients carved from
# each fold's training patients (set select_on_test = True for the papers' selection on the
# test fold), and the maps are rendered from fixations.csv (gaze_source = 'heatmaps' reads
# the PNGs; heatmap_png_mode = 'luma' reproduces their grey reading).
model = 'gat'
backbone = 'efficientnet_b0'
pretrain_path = 'pretrained/tf_efficientnet_b0_aa-827b6e33.pth'  # python pretrained/fetch.py tf_efficientnet_b0
encoder_only = True
drop_path_rate = 0.2          # smp's timm-efficientnet-b0 encoder
dropout = 0.0
head_init = 'xavier'          # smp ClassificationHead: xavier-uniform weights, zero bias
window_loss_from_epoch = 3    # published: window CE unless `epoch < 2` on 0-based epochs
input_size = 224
batch_size = 32
end_epoch = 60
init_lr = 5e-4
lr_schedule = 'multistep'
lr_milestones = [50]
split = 'cv'
rseed = 1

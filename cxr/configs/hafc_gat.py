# HAFC GAT on CXR-Eye (cxr.md §2.3-2.6, run_train.sh): smp's timm-efficientnet-b0 encoder (timm
# efficientnet_b0 + the TF-ported ImageNet weights, drop-path 0.2) with its xavier-initialised
# head, 224 px, 5-fold CV by patient with --rseed 1, Adam 5e-4, MultiStepLR [50] x0.1, 60
# epochs, batch 32, no augmentation, dropout 0, the window CE from the third epoch.
#   python pretrained/fetch.py tf_efficientnet_b0
#   python cxr/train.py cxr/configs/hafc_gat.py --mimic_root=/data/mimic-cxr-jpg --egd_dir=/data/egd-cxr/1.0.0
# Protocol: ours (the best epoch on validation patients carved from each fold's training
# patients, maps rendered from fixations.csv, exactly scored window crops). --protocol=published
# reproduces the published protocol (test-fold selection, heatmap.png read as grey, full JPEG
# decoding, the one-pixel-shifted crops; cxr/published.py); the README's table lists every difference.
model_type = 'gat'
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

# HAFC KFN on CXR-Eye (cxr.md §2.4-2.6): two smp timm-efficientnet-b0 encoders (image, image x
# gaze mask minmax(map) > 0.3) and a plain Linear(640 -> 3), 224 px, 5-fold CV with --rseed 1,
# each fold initialised from the same fold's GAT (the paper's strongest setting; train
# cxr/configs/hafc_gat.py first, with the same protocol).
#   python cxr/train.py cxr/configs/hafc_kfn.py --pretrained_dir=runs/cxr/gat_cv_rseed1 ...
# Protocol: ours (validation patients, maps from fixations.csv). --protocol=published: test-fold
# selection, heatmap.png read as grey, full JPEG decoding (cxr/published.py); with it, point
# pretrained_dir at the published GAT run (runs/cxr/gat_cv_rseed1_published).
model_type = 'kfn'
backbone = 'efficientnet_b0'
pretrain_path = 'pretrained/tf_efficientnet_b0_aa-827b6e33.pth'  # python pretrained/fetch.py tf_efficientnet_b0
pretrained_dir = 'runs/cxr/gat_cv_rseed1'   # ours (fold<k>/ckpt_best.pt) or HAFC's output (<k>_fold/best.pth)
encoder_only = True
drop_path_rate = 0.2          # smp's timm-efficientnet-b0 encoder
gaze_threshold = 0.3
input_size = 224
batch_size = 32
end_epoch = 60
init_lr = 5e-4
lr_schedule = 'multistep'
lr_milestones = [50]
split = 'cv'
rseed = 1

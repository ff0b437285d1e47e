# The paper's KFN (cub_pim.md §1.6-1.7): two ResNet-50 branches (image, image x gaze map / 255)
# started from a GAT checkpoint, 448 px, no ColorJitter, SGD 1e-3, MultiStepLR [50, 100], 150
# epochs, batch 8 (the README of the paper's code).
#   python cub/train.py cub/configs/kfn_r50.py --root=/data/CUB_200_2011
# Protocol: ours (validation-split selection; image and masked image share one crop and flip).
# --protocol=published reproduces the published protocol (test-set selection on all 5,994
# training images, the masked picture cropped and flipped on its own; cub/published.py); with it,
# start from the published GAT run: --GAT_pretrained=runs/cub/gat_r50_published/ckpt_best.pt.
model_type = 'kfn'
backbone = 'resnet50'
pretrain_path = 'pretrained/resnet50-19c8e357.pth'
GAT_pretrained = 'runs/cub/gat_r50/ckpt_best.pt'  # ours or the released gat best.pth
root = 'data/CUB_200_2011'
GHA_dir = 'CUB_GHA/All_Fixation'
num_classes = 200
input_size = 448
batch_size = 8                # README of the paper's code
workers = 8
end_epoch = 150
init_lr = 1e-3
lr_schedule = 'multistep'
model_name = 'kfn_r50'
cam_images = 12

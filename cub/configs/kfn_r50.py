# The paper's KFN (cub_pim.md §1.6): two ResNet-50 branches (image, image x gaze) started from a GAT checkpoint.
# python cub/train.py cub/configs/kfn_r50.py --root=/data/CUB_200_2011
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

# PIM on CUB with FGVC-PIM's ResNet-50 builder (cub_pim.md §3.3): timm ResNet-50 with the MIIL ImageNet-21k
# weights (resnet50_miil_21k.pth, its 11,221-class head ignored), layer1-4 at 448 px, FPN 512 with the
# bilinear up path, the published fractions of each stage's tokens selected, the CUB200_SwinT.yaml
# optimisation (SGD Nesterov 5e-4, weight decay 5e-4, 400-step warm-up then cosine per iteration, 50 epochs,
# batch 16 x 2, AMP) and PIM's transforms at 448 (squash to 595 = 448 x 510/384; the published keeps 510).
#   python cub/train.py cub/configs/pim_r50.py --root=/data/CUB_200_2011 --pretrain_path=resnet50_miil_21k.pth
# Protocol: ours (epoch and head chosen on validation); see pim_swinl.py.
model_type = 'pim'
backbone = 'resnet50'
pretrain_path = 'resnet50_miil_21k.pth'  # the MIIL file, local (PIM's builder reads ./resnet50_miil_21k.pth)
root = 'data/CUB_200_2011'
num_classes = 200
input_size = 448
transforms = 'pim'
batch_size = 16
accumulate_steps = 2
workers = 2
end_epoch = 50
optimizer = 'sgd'
nesterov = True
momentum = 0.9
init_lr = 5e-4
weight_decay = 5e-4
lr_schedule = 'pim'
warmup_steps = 400
amp = 'fp16'
fpn_size = 512
fpn_upsample = 'bilinear'
model_name = 'pim_r50'
cam_images = 12

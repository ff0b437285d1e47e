# The paper's CAL (Rao et al., ICCV 2021; gradia_cal.md Part B): WS-DAN with counterfactual
# attention on a ResNet-101 (torchvision ImageNet weights, layer4 at stride 1: 28x28 at 448 px),
# M = 32 attention maps, beta 0.05, SGD 1e-3 momentum 0.9 weight decay 1e-5, lr x0.9 every two
# epochs set per iteration, 160 epochs, batch 16 (4 per GPU x 4 GPUs), Resize 512 -> crop 448,
# ColorJitter(brightness 0.126, saturation 0.5).
#   python pretrained/fetch.py resnet101
#   torchrun --nproc_per_node=4 cub/train.py cub/configs/cal_r101.py --root=/data/CUB_200_2011
# Protocol: ours (best epoch on a validation split, on the main accuracy alone; the end of the
# run reports raw, raw+crop and cal_tta on test). --protocol=published validates on the test
# split with raw+crop as published (cub/published.py). Published result: 90.6 % (cal_tta, B11).
model_type = 'cal'
backbone = 'resnet101'
pretrain_path = 'pretrained/resnet101-63fe2227.pth'  # torchvision ImageNet weights, as published
root = 'data/CUB_200_2011'    # point at your CUB_200_2011 folder
num_classes = 200
input_size = 448
batch_size = 4                # per process: 16 over 4 GPUs as published (one process: use 16)
workers = 1                   # published
end_epoch = 160
optimizer = 'sgd'
init_lr = 1e-3
momentum = 0.9
weight_decay = 1e-5
lr_schedule = 'cal_exponential'
num_attentions = 32
beta = 0.05
output_stride = 16
eval_protocol = 'raw+crop'    # the published validation; cal_tta is reported at the end
sync_bn = True                # published: Apex SyncBN under DDP
model_name = 'cal_r101'
cam_images = 12

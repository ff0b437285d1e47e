# WS-DAN (Hu et al. 2019) as GuYuc/WS-DAN.PyTorch trains it (gradia_cal.md B12): Inception-v3
# Mixed_6e features (768 channels, torchvision ImageNet weights), M = 32, beta 0.05, SGD 1e-3
# momentum 0.9 weight decay 1e-5, batch 12 on one GPU, 160 epochs, loss
# (CE_raw + CE_crop + CE_drop)/3 + centre, evaluation (raw + crop at theta 0.1) / 2.
#   python pretrained/fetch.py inception_v3
#   python cub/train.py cub/configs/wsdan_inception.py --root=/data/CUB_200_2011
# Difference kept from CAL's code base: the lr law is CAL's per-iteration 0.9^(epoch/2) (WS-DAN.PyTorch
# steps StepLR(2, 0.9) once per epoch: the same at even epochs, a staircase between). Published
# result (GuYuc): 88.28 % on CUB.
model_type = 'wsdan'
backbone = 'inception_v3'
pretrain_path = 'pretrained/inception_v3_google-0cc3c7bd.pth'
root = 'data/CUB_200_2011'
num_classes = 200
input_size = 448
batch_size = 12
workers = 4
end_epoch = 160
optimizer = 'sgd'
init_lr = 1e-3
momentum = 0.9
weight_decay = 1e-5
lr_schedule = 'cal_exponential'
num_attentions = 32
beta = 0.05
output_stride = 32            # Inception's own strides
feature_stage = 3             # Mixed_6e
eval_protocol = 'raw+crop'
model_name = 'wsdan_inception'
cam_images = 12

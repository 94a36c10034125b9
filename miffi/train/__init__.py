"""Training and fine-tuning Miffi-class models on labelled micrographs (the paper's recipe).

``layer_decay``  parameter groups with layer-wise learning-rate decay for timm ConvNeXt
``pretrained``   ImageNet weights from a local file, adapted to 1 or 2 input channels
``data``         labelled samples, stratified splits/subsets, the training augmentation
``loop``         the training loop: AdamW, cosine schedule, checkpoints, resume, logs
``curves``       the learning-curve experiment and the loss/accuracy figures
"""

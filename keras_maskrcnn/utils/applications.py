"""The `keras.applications` networks the backbones are built on, by backbone name.

Plain data without a Keras import, so that the command-line tools can list the names in `--help`
without loading TensorFlow.
"""

# name -> (keras.applications constructor, [C3, C4, C5] layer names, preprocessing mode);
# None stands for the application's own output.
APPLICATIONS = {
    "resnet50": ("ResNet50", ["conv3_block4_out", "conv4_block6_out", "conv5_block3_out"], "caffe"),
    "resnet101": ("ResNet101", ["conv3_block4_out", "conv4_block23_out", "conv5_block3_out"], "caffe"),
    "resnet152": ("ResNet152", ["conv3_block8_out", "conv4_block36_out", "conv5_block3_out"], "caffe"),
    "mobilenetv2": ("MobileNetV2", ["block_6_expand_relu", "block_13_expand_relu", "out_relu"], "tf"),
    "mobilenetv3small": ("MobileNetV3Small", ["expanded_conv_2_add", "expanded_conv_7_add", None], "rgb"),
    "mobilenetv3large": ("MobileNetV3Large", ["expanded_conv_5_add", "expanded_conv_11_add", None], "rgb"),
    "efficientnetb0": ("EfficientNetB0", ["block4a_expand_activation", "block6a_expand_activation", "top_activation"], "rgb"),
    "efficientnetb1": ("EfficientNetB1", ["block4a_expand_activation", "block6a_expand_activation", "top_activation"], "rgb"),
    "efficientnetb2": ("EfficientNetB2", ["block4a_expand_activation", "block6a_expand_activation", "top_activation"], "rgb"),
    "efficientnetb3": ("EfficientNetB3", ["block4a_expand_activation", "block6a_expand_activation", "top_activation"], "rgb"),
    "densenet121": ("DenseNet121", ["conv3_block12_concat", "conv4_block24_concat", "conv5_block16_concat"], "torch"),
    "vgg16": ("VGG16", ["block3_pool", "block4_pool", "block5_pool"], "caffe"),
}

BACKBONES = tuple(APPLICATIONS)

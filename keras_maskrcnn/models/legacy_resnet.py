"""ResNet in the layout of keras-resnet 0.2, the backbone of keras-retinanet 1.0 and keras-maskrcnn 0.2.

Their `.h5` files hold weights under these layer names, and their numerics depend on details where
`keras.applications.ResNet50` differs: the 7x7 stride-2 convolution and the 3x3 stride-2 max pooling
use `padding='same'` (no explicit zero padding), every convolution is bias-free, batch
normalisation uses epsilon 1e-5 and is frozen, the stride of a stage sits on its first 1x1
convolution, and 3x3 convolutions are zero padding 1 + valid.

Layer names: conv1, bn_conv1, conv1_relu, pool1, then per block res{stage}{block}_branch2a/2b/2c
(+ bn..., _relu), res{stage}{block}_branch1 for the first block of a stage, res{stage}{block} (the
sum) and res{stage}{block}_relu; blocks are a, b, c, ... or, in the numbered stages of
ResNet101/152, a, b1, b2, ...
"""

import keras

# depth -> blocks per stage (stages 2..5) and which stages number their blocks.
RESNET_BLOCKS = {
    50: ((3, 4, 6, 3), (False, False, False, False)),
    101: ((3, 4, 23, 3), (False, True, True, False)),
    152: ((3, 8, 36, 3), (False, True, True, False)),
}


def block_name(stage, block, numerical):
    """'2a', '4b1', ...: stage 2..5 and block index 0.. as keras-resnet names them."""
    if block > 0 and numerical:
        return f"{stage}b{block}"
    return f"{stage}{chr(ord('a') + block)}"


def _batch_norm(name, freeze_bn):
    layer = keras.layers.BatchNormalization(axis=3, epsilon=1e-5, name=name)
    layer.trainable = not freeze_bn
    return layer


def _bottleneck(x, filters, stage, block, numerical, freeze_bn):
    tag = block_name(stage, block, numerical)
    stride = 2 if block == 0 and stage > 2 else 1
    y = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"res{tag}_branch2a")(x)
    y = _batch_norm(f"bn{tag}_branch2a", freeze_bn)(y)
    y = keras.layers.Activation("relu", name=f"res{tag}_branch2a_relu")(y)
    y = keras.layers.ZeroPadding2D(1, name=f"padding{tag}_branch2b")(y)
    y = keras.layers.Conv2D(filters, 3, use_bias=False, name=f"res{tag}_branch2b")(y)
    y = _batch_norm(f"bn{tag}_branch2b", freeze_bn)(y)
    y = keras.layers.Activation("relu", name=f"res{tag}_branch2b_relu")(y)
    y = keras.layers.Conv2D(filters * 4, 1, use_bias=False, name=f"res{tag}_branch2c")(y)
    y = _batch_norm(f"bn{tag}_branch2c", freeze_bn)(y)
    if block == 0:
        shortcut = keras.layers.Conv2D(filters * 4, 1, strides=stride, use_bias=False, name=f"res{tag}_branch1")(x)
        shortcut = _batch_norm(f"bn{tag}_branch1", freeze_bn)(shortcut)
    else:
        shortcut = x
    y = keras.layers.Add(name=f"res{tag}")([y, shortcut])
    return keras.layers.Activation("relu", name=f"res{tag}_relu")(y)


def legacy_resnet_features(inputs, depth=50, freeze_bn=True, freeze_backbone=False):
    """[C3, C4, C5] (strides 8, 16, 32; 512, 1024, 2048 channels) of a keras-resnet ResNet`depth`
    on `inputs` (B, H, W, 3) caffe-preprocessed. freeze_bn keeps batch normalisation in inference
    mode (keras-maskrcnn and keras-retinanet always trained so); freeze_backbone freezes every layer."""
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"keras-resnet ResNet depth {depth} is not supported; choose one of {sorted(RESNET_BLOCKS)}")
    blocks, numbered = RESNET_BLOCKS[depth]
    x = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = _batch_norm("bn_conv1", freeze_bn)(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    outputs = []
    filters = 64
    for stage_index, count in enumerate(blocks):
        for block in range(count):
            x = _bottleneck(x, filters, stage_index + 2, block, numbered[stage_index], freeze_bn)
        filters *= 2
        outputs.append(x)
    if freeze_backbone:
        backbone = keras.Model(inputs, outputs[1:])
        for layer in backbone.layers:
            layer.trainable = False
    return outputs[1:]

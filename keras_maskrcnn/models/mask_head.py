"""The mask head: per-RoI 14x14 pooled features -> 28x28 per-class mask probabilities."""

import keras

MASK_UPSAMPLINGS = ("nearest", "transposed")


def mask_submodel(num_classes, pyramid_feature_size=256, roi_size=(14, 14), feature_size=256,
                  name="mask_submodel", last_conv_name="roi_mask_4", upsampling="transposed"):
    """(R, 14, 14, pyramid_feature_size) -> (R, 28, 28, num_classes) sigmoid probabilities,
    R = RoIs of the whole batch.

    4 x conv3x3(feature_size, relu), then the 2x upsampling, then conv1x1(num_classes, sigmoid);
    feature_size 256 by default. upsampling "transposed" (the default; the Mask R-CNN paper's,
    torchvision's): a 2x2 stride-2 transposed conv(feature_size, relu) named roi_mask_deconv, a
    ninth of the multiply-adds of the conv3x3 at 28x28 it replaces; "nearest" (keras-maskrcnn's):
    nearest 2x upsampling -> conv3x3(feature_size, relu) named last_conv_name (keras-maskrcnn 0.2
    called it roi_mask_features).
    """
    if upsampling not in MASK_UPSAMPLINGS:
        raise ValueError(f"mask upsampling must be one of {MASK_UPSAMPLINGS}, got {upsampling!r}")
    inputs = keras.Input(shape=(roi_size[0], roi_size[1], pyramid_feature_size))
    x = inputs
    for i in range(4):
        x = keras.layers.Conv2D(feature_size, 3, padding="same", activation="relu",
                                kernel_initializer="he_normal", name=f"roi_mask_{i}")(x)
    if upsampling == "transposed":
        x = keras.layers.Conv2DTranspose(feature_size, 2, strides=2, activation="relu",
                                         kernel_initializer="he_normal", name="roi_mask_deconv")(x)
    else:
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name="roi_mask_upsample")(x)
        x = keras.layers.Conv2D(feature_size, 3, padding="same", activation="relu",
                                kernel_initializer="he_normal", name=last_conv_name)(x)
    outputs = keras.layers.Conv2D(num_classes, 1, activation="sigmoid", dtype="float32", name="roi_mask")(x)
    return keras.Model(inputs, outputs, name=name)

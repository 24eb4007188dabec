"""The mask head: per-RoI 14x14 pooled features -> 28x28 per-class mask probabilities."""

import keras


def mask_submodel(num_classes, pyramid_feature_size=256, roi_size=(14, 14), feature_size=256,
                  name="mask_submodel", last_conv_name="roi_mask_4"):
    """(R, 14, 14, pyramid_feature_size) -> (R, 28, 28, num_classes) sigmoid probabilities,
    R = RoIs of the whole batch.

    4 x conv3x3(feature_size, relu) -> nearest 2x upsampling -> conv3x3(feature_size, relu)
    -> conv1x1(num_classes, sigmoid); feature_size 256 by default. last_conv_name: the conv after
    the upsampling (keras-maskrcnn 0.2 called it roi_mask_features).
    """
    inputs = keras.Input(shape=(roi_size[0], roi_size[1], pyramid_feature_size))
    x = inputs
    for i in range(4):
        x = keras.layers.Conv2D(feature_size, 3, padding="same", activation="relu",
                                kernel_initializer="he_normal", name=f"roi_mask_{i}")(x)
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="roi_mask_upsample")(x)
    x = keras.layers.Conv2D(feature_size, 3, padding="same", activation="relu",
                            kernel_initializer="he_normal", name=last_conv_name)(x)
    outputs = keras.layers.Conv2D(num_classes, 1, activation="sigmoid", dtype="float32", name="roi_mask")(x)
    return keras.Model(inputs, outputs, name=name)

"""The network: the seed article's CNN, with the options the recipes switch."""

import keras
from keras import layers, ops

from .recipes import Recipe


@keras.saving.register_keras_serializable(package="oodgate")
class L2Constrain(layers.Layer):
    """Normalise each feature vector to unit length and scale it to radius alpha.

    A layer class rather than a Lambda so the model saves and exports cleanly.
    """

    def __init__(self, alpha: float, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, x):
        norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)
        return self.alpha * x / norm

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="oodgate")
class CosineLogits(layers.Layer):
    """scale * cos(feature, class weight): the CosFace/ArcFace head, margin applied in the loss."""

    def __init__(self, classes: int, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.scale = int(classes), float(scale)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.classes),
                                      initializer="glorot_uniform", name="kernel")

    def call(self, x):
        x = x / ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True) + 1e-12)
        w = self.kernel / ops.sqrt(ops.sum(ops.square(self.kernel), axis=0, keepdims=True) + 1e-12)
        return self.scale * ops.matmul(x, w)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "scale": self.scale}


def _conv_block(x, filters: int, recipe: Recipe, name: str, pool: bool):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=not recipe.batch_norm, name=name)(x)
    if recipe.batch_norm:
        x = layers.BatchNormalization(name=name + "_bn")(x)
    x = layers.Activation("relu", name=name + "_relu")(x)
    return layers.MaxPooling2D(2, name=name + "_pool")(x) if pool else x


def build(recipe: Recipe, input_shape=(28, 28, 1), classes: int = 10):
    """Returns (training model, export model with outputs [embedding, probabilities]).

    The training model outputs the softmax for Keras fit (seed, l2-aug) or
    [embedding, logits] for the custom loop (Recipe.custom_loop()).
    """
    pixels = keras.Input(input_shape, name="pixels")
    # 28x28 -> 14x14 -> 7x7; no pooling after the last convolution (pooling 7x7 would
    # drop its last row and column).
    x = _conv_block(pixels, 32, recipe, "conv1", pool=True)
    x = _conv_block(x, 64, recipe, "conv2", pool=True)
    x = _conv_block(x, 128, recipe, "conv3", pool=False)
    x = layers.Flatten(name="flatten")(x)
    if recipe.dropout > 0:
        x = layers.Dropout(recipe.dropout, name="dropout")(x)
    feature = layers.Dense(recipe.embedding_dim, name="feature")(x)
    embedding = L2Constrain(recipe.alpha, name="l2")(feature) if recipe.l2 else feature
    if recipe.custom_loop():
        # The loop needs the logits (margins, outlier loss); export keeps the contract.
        # An outlier class is an 11th logit for training only: the export's softmax is
        # over the ten digits.
        extra = 1 if recipe.outlier_weight > 0 and recipe.outlier_target == "class" else 0
        if recipe.head == "dense":
            logits = layers.Dense(classes + extra, name="logits")(embedding)
        else:
            logits = CosineLogits(classes + extra, recipe.alpha, name="logits")(embedding)
        train_model = keras.Model(pixels, [embedding, logits], name="classifier")
        if extra:
            logits = logits[:, :classes]
        probabilities = layers.Activation("softmax", name="softmax")(logits)
        export_model = keras.Model(pixels, [embedding, probabilities], name="oodgate")
        return train_model, export_model
    probabilities = layers.Dense(classes, activation="softmax", name="softmax")(embedding)
    train_model = keras.Model(pixels, probabilities, name="classifier")
    export_model = keras.Model(pixels, [embedding, probabilities], name="oodgate")
    return train_model, export_model

"""Solution to the exercise of notebook 08."""

import tensorflow as tf

from solo_lib.losses import solo_losses


def train_step(model, optimizer, images, targets):
    """One optimisation step: forward pass, SOLO losses, gradient of the total, optimizer update."""
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        losses = solo_losses(outputs, targets, model.config)
    grads = tape.gradient(losses["total"], model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return losses["total"]

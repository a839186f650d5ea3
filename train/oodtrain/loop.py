"""Training loop for the recipes Keras fit cannot express: margin heads (CosFace,
ArcFace), center loss and outlier exposure with synthetic outliers."""

import math
import time

import numpy as np

from . import fonts, glyphs, synthetic


def _shift(rng, xb, s):
    """Random integer shift of each image by up to s pixels, zero fill."""
    n = len(xb)
    p = np.pad(xb, ((0, 0), (s, s), (s, s), (0, 0)))
    dy, dx = rng.integers(0, 2 * s + 1, (2, n))
    rows = np.arange(28)[None, :] + dy[:, None]
    cols = np.arange(28)[None, :] + dx[:, None]
    return p[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def fit(train_model, recipe, x, y, seed, x_val=None, y_val=None, log=print):
    """Trains `train_model` (outputs [embedding, logits]) in place; returns seconds spent."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    n, batch = len(x), recipe.batch_size
    steps_per_epoch = math.ceil(n / batch)
    lr = recipe.learning_rate
    if recipe.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps_per_epoch * recipe.epochs)
    if recipe.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(lr)
    optimizer.build(train_model.trainable_variables)

    alpha, margin, classes = recipe.alpha, recipe.margin, 10
    outlier_class = recipe.outlier_weight > 0 and recipe.outlier_target == "class"
    width = classes + 1 if outlier_class else classes
    use_oe, use_center = recipe.outlier_weight > 0, recipe.center_weight > 0
    n_out = max(1, round(batch * recipe.outlier_ratio)) if use_oe else 0
    centers = tf.Variable(tf.zeros((classes, recipe.embedding_dim)), trainable=False)

    def target_logits(logits, onehot):
        if recipe.head == "cosface":
            return logits - alpha * margin * onehot
        if recipe.head == "arcface":
            cos = tf.clip_by_value(logits / alpha, -1 + 1e-7, 1 - 1e-7)
            sin = tf.sqrt(1 - cos * cos)
            phi = cos * math.cos(margin) - sin * math.sin(margin)
            # Past pi - m, cos(theta + m) would rise again; fall back to a linear penalty.
            phi = tf.where(cos > math.cos(math.pi - margin), phi, cos - math.sin(math.pi - margin) * margin)
            return alpha * tf.where(onehot > 0, phi, cos)
        return logits

    @tf.function
    def step(xb, yb, ob):
        nb = tf.shape(xb)[0]
        inputs = tf.concat([xb, ob], 0) if use_oe else xb
        with tf.GradientTape() as tape:
            emb, logits = train_model(inputs, training=True)
            e_in, l_in = emb[:nb], logits[:nb]
            onehot = tf.one_hot(yb, width)
            ce = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, target_logits(l_in, onehot)))
            loss = ce
            oe = tf.constant(0.0)
            if use_oe and outlier_class:
                out_hot = tf.one_hot(tf.fill([tf.shape(ob)[0]], classes), width)
                oe = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
                    out_hot, target_logits(logits[nb:], out_hot)))
                loss += recipe.outlier_weight * oe
            elif use_oe:
                # Cross-entropy to the uniform distribution over the ten classes.
                oe = -tf.reduce_mean(tf.nn.log_softmax(logits[nb:]))
                loss += recipe.outlier_weight * oe
            if use_center:
                c = tf.gather(centers, yb)
                loss += recipe.center_weight * tf.reduce_mean(tf.reduce_sum(tf.square(e_in - c), 1)) / alpha ** 2
        variables = train_model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        if use_center:
            e = tf.stop_gradient(e_in)
            mean = tf.math.unsorted_segment_mean(e, yb, classes)
            present = tf.math.unsorted_segment_sum(tf.ones_like(yb, tf.float32), yb, classes)[:, None] > 0
            centers.assign(tf.where(present, 0.5 * centers + 0.5 * mean, centers))
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(l_in[:, :classes], 1), yb), tf.float32))
        return ce, oe, acc

    @tf.function
    def predict_logits(xb):
        return train_model(xb, training=False)[1]

    empty = np.zeros((0, 28, 28, 1), np.float32)
    started = time.time()
    pools = near_pools(rng, recipe, min(recipe.near_pool, n), log)
    n_glyph_digits = round(batch * recipe.digit_glyph_share)
    n_font_digits = round(batch * recipe.font_digit_share)
    for epoch in range(recipe.epochs):
        t = time.time()
        order = rng.permutation(n)
        outliers = epoch_outliers(rng, recipe, steps_per_epoch * n_out, x, y, pools) if use_oe else None
        sums = np.zeros(3)
        for s in range(steps_per_epoch):
            idx = order[s * batch: (s + 1) * batch]
            xb, yb = x[idx], y[idx]
            if n_glyph_digits:
                g = rng.integers(0, len(pools["digits"][0]), n_glyph_digits)
                xb = np.concatenate([xb, pools["digits"][0][g]])
                yb = np.concatenate([yb, pools["digits"][1][g]])
            if n_font_digits:
                f = rng.integers(0, len(pools["font_digits"][0]), n_font_digits)
                xb = np.concatenate([xb, pools["font_digits"][0][f]])
                yb = np.concatenate([yb, pools["font_digits"][1][f]])
            if recipe.flip:
                mirror = rng.random(len(xb)) < 0.5
                xb = np.where(mirror[:, None, None, None], xb[:, :, ::-1], xb)
            if recipe.shift:
                xb = _shift(rng, xb, recipe.shift)
            ob = outliers[s * n_out: (s + 1) * n_out] if use_oe else empty
            sums += [float(v) for v in step(tf.constant(xb), tf.constant(yb), tf.constant(ob))]
        msg = (f"epoch {epoch + 1}/{recipe.epochs} {time.time() - t:.0f}s ce {sums[0] / steps_per_epoch:.4f}"
               f" oe {sums[1] / steps_per_epoch:.4f} acc {sums[2] / steps_per_epoch:.4f}")
        if x_val is not None and len(x_val):
            pred = np.concatenate([np.argmax(predict_logits(tf.constant(x_val[i: i + 1000]))[:, :classes], 1)
                                   for i in range(0, len(x_val), 1000)])
            msg += f" val_acc {np.mean(pred == y_val):.4f}"
        log(msg, flush=True)
    return time.time() - started


def near_pools(rng, recipe, size, log=print):
    """Stroke renderings are slow in numpy (a few ms each), so each near-digit type, the
    stroke-font digits and the typeset font digits are rendered once into a pool of `size`
    that the epochs sample."""
    pools = {}
    t = time.time()
    for name in recipe.near_types:
        pools[name] = glyphs.NEAR_TYPES[name](rng, size)
    if recipe.digit_glyph_share > 0:
        pools["digits"] = glyphs.digit_glyphs(rng, size)
    if recipe.font_digit_share > 0:
        pools["font_digits"] = fonts.font_digits(rng, size)
    if pools:
        log(f"rendered {', '.join(pools)} pools of {size} in {time.time() - t:.0f}s", flush=True)
    return pools


def epoch_outliers(rng, recipe, count, x, y, pools):
    """`count` outliers: `near_share` of them drawn from the near-digit pools (shifted by
    up to 2 px), the rest made fresh from `outlier_types`; shuffled."""
    n_near = round(count * recipe.near_share) if recipe.near_types else 0
    parts = [synthetic.mixture(rng, count - n_near, x, y, recipe.outlier_types)]
    if n_near:
        which = rng.integers(0, len(recipe.near_types), n_near)
        for i, name in enumerate(recipe.near_types):
            k = int((which == i).sum())
            parts.append(_shift(rng, pools[name][rng.integers(0, len(pools[name]), k)], 2))
    out = np.concatenate(parts)
    return out[rng.permutation(len(out))]

"""The tf.data steps every task's pipeline shares: batching data that is
already in memory, and collecting a batched pipeline back into arrays."""
import numpy as np
import tensorflow as tf


def in_memory(ds, size, finish, *, batch_size, seed, training):
    """Cache `ds` (`size` examples held in memory); when training, shuffle the whole split with
    `seed` (the same order for the same seed) and repeat forever; `finish` each element; batch
    (dropping the remainder when training); prefetch."""
    ds = ds.cache()
    if training:
        ds = ds.shuffle(size, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def to_numpy(ds, limit=None, labels=None):
    """(x, y) arrays from a batched `(x, y)` pipeline, at most `limit` examples; `labels` maps
    each batch of y (as numpy) first."""
    xs, ys, n = [], [], 0
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy() if labels is None else labels(y.numpy()))
        n += len(xs[-1])
        if limit and n >= limit:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x[:limit], y[:limit]) if limit else (x, y)

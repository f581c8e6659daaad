"""Batch statistics of the global batch under ``tf.distribute``.

The curvature of a Newton loss (empirical Hessian or Fisher) is a statistic
of the whole batch. With a strategy, each replica holds a shard; its local
sums and counts are all-reduced in replica context, the pattern of Keras'
synchronized batch normalization, so that training on R replicas equals
single-device training on the same global batch. Outside a replica context
(or on one replica) everything is returned unchanged.

These are the only cross-replica operations of the Newton core: the batch
means of the dense and estimated curvatures, the counts of the Woodbury
Fisher, and its gathered gradients (and where a replica's rows start).

Example:

>>> import tensorflow as tf
>>> from keras_newton.newton._distribution import global_batch_mean
>>> global_batch_mean(tf.constant([1.0, 2.0]), tf.constant(4.0)).numpy()
array([1., 2.], dtype=float32)
"""

import tensorflow as tf


def _replica_context():
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def global_batch_mean(mean: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """The mean over the global batch when running on several replicas.

    In a replica context of a ``tf.distribute`` strategy, sums and counts are
    all-reduced separately (the pattern of Keras' synchronized batch norm), so
    the curvature equals the single-device statistic of the whole global
    batch. ``count`` is the number of samples ``mean`` averages (the usable
    ones, so left-out samples weigh nothing on any replica). Elsewhere
    ``mean`` is returned unchanged.
    """
    context = _replica_context()
    if context is None:
        return mean
    total, total_count = context.all_reduce(
        tf.distribute.ReduceOp.SUM, [mean * count, count]
    )
    return total / tf.maximum(total_count, 1.0)


def replica_batch_share(count: tf.Tensor) -> tf.Tensor:
    """``R · n_r / N``: corrects a replica's ``sum_over_batch_size`` loss to the global mean.

    Keras reduces each replica's loss by its own sample count ``n_r`` and by
    the replica count ``R``, so a replica's samples weigh ``1 / (R n_r)``
    instead of ``1 / N`` when the shards differ in size (a final partial
    batch, e.g. 2 and 1 samples: weights 1/4 and 1/2 instead of 1/3).
    Multiplying the replica's loss by this factor gives ``1 / N`` for every
    sample, the single-device step. 1 outside a replica context.
    """
    context = _replica_context()
    if context is None:
        return tf.constant(1.0)
    count = tf.cast(count, tf.float32)
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(context.num_replicas_in_sync * count, total)


def global_batch_sum(value: tf.Tensor) -> tf.Tensor:
    """``value`` summed over the replicas (unchanged on a single one)."""
    context = _replica_context()
    if context is None:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def local_rows_offset(local_count: tf.Tensor) -> tf.Tensor:
    """Where this replica's rows start in :func:`global_batch_rows` (0 on one).

    Replicas may hold different numbers of rows (a final partial batch), so
    the offset is the sum of the row counts of the replicas before this one.
    """
    context = _replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    counts = context.all_gather(tf.reshape(tf.cast(local_count, tf.int32), [1]), axis=0)
    before = tf.range(tf.shape(counts)[0]) < tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.reduce_sum(tf.where(before, counts, tf.zeros_like(counts)))


def global_batch_rows(rows: tf.Tensor) -> tf.Tensor:
    """``rows`` ``[N, ...]`` of all replicas, concatenated (unchanged on one)."""
    context = _replica_context()
    if context is None:
        return rows
    return context.all_gather(rows, axis=0)

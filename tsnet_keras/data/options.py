"""tf.data options every dataset the toolkit feeds to Keras gets.

tf.data's autotuning runs an optimisation thread per iterator that sleeps for
periods doubling from 10 ms (to a minute). On TensorFlow 2.21 deleting the
iterator can wait for that sleep to end, so a `fit`, `evaluate` or `predict`
call returns only at the next period's end: 10 ms x (2^n - 1) after its
iterator was made, up to twice its own duration (measured: 5 training steps
done in 2.7 s returned after 5.12 s; BENCHMARKS.md section 10). With autotuning
off, the `AUTOTUNE` parallelism of a map is the number of CPU cores and the
iterator is deleted at once.
"""


def without_autotune(dataset):
    """`dataset` with tf.data autotuning off (no stall when its iterator is deleted)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


__all__ = ["without_autotune"]

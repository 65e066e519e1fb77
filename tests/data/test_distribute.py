"""`video_dataset` under tf.distribute.MirroredStrategy on 2 logical CPUs.

Logical devices must be configured before TensorFlow runs any op, so the check
runs in a fresh Python process and leaves this process' TF state alone.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    from tsnet_keras.data import video_dataset

    folder = sys.argv[1]
    videos = [(os.path.join(folder, "long.mp4"), 0), (os.path.join(folder, "other.mp4"), 1)] * 2
    dataset = video_dataset(videos, mode="train", batch_size=4, seed=0, repeat=True, crop_size=32, jitter=(40, 56))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        sparse = keras.Input((4, 32, 32, 3), name="sparse")
        dense = keras.Input((32, 32, 32, 3), name="dense")
        features = keras.layers.Concatenate()(
            [keras.layers.GlobalAveragePooling3D()(sparse), keras.layers.GlobalAveragePooling3D()(dense)]
        )
        model = keras.Model({"sparse": sparse, "dense": dense}, keras.layers.Dense(2, name="logits")(features))
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    assert history.history["loss"][0] > 0

    distributed = strategy.experimental_distribute_dataset(dataset)
    inputs, labels = next(iter(distributed))
    shapes = [tuple(part.shape) for part in strategy.experimental_local_results(inputs["dense"])]
    assert shapes == [(2, 32, 32, 32, 3)] * 2, shapes

    @tf.function
    def count(inputs, labels):
        def replica(inputs, labels):
            logits = model(inputs, training=False)
            return tf.cast(tf.shape(logits)[0], tf.float32)
        return strategy.reduce("SUM", strategy.run(replica, args=(inputs, labels)), axis=None)

    assert float(count(inputs, labels)) == 4.0
    print("DISTRIBUTED OK", strategy.num_replicas_in_sync)
    """
)


def test_mirrored_strategy_fit_and_distribute_dataset(video_dir):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(video_dir)], capture_output=True, text=True, timeout=600, env=env, cwd=root
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "DISTRIBUTED OK 2" in result.stdout

"""Search runs in a fresh process, for the resume and tf.distribute tests.

Usage: python -m tests.search.search_worker MODE OUTPUT [options]

- `run`: `run_search_step(1, ...)` into OUTPUT; `--kill-at N` sends SIGKILL to
  itself after step N (a crash between checkpoints).
- `mirrored`: a few PARSEC steps under MirroredStrategy on 2 logical CPUs.
- `multiworker`: `custom_search_loop` under MultiWorkerMirroredStrategy; the
  cluster comes from TF_CONFIG.
- `mwsearch`: `run_search_step` under MultiWorkerMirroredStrategy on JPEG
  frame folders listed in OUTPUT/videos.json, each worker reading its shard
  (`worker_shard`); `--kill-at N` kills every worker after step N.
- `mwretrain`: `recipes.retrain` under MultiWorkerMirroredStrategy on the
  list files OUTPUT/train.txt and OUTPUT/val.txt (JPEG frame folders).
- `mwrecipe`: `recipes.search_step(1, ...)` under MultiWorkerMirroredStrategy
  on OUTPUT/train.txt and OUTPUT/val.txt.
- `equal`: supernet == fixed model on the backend in KERAS_BACKEND (masked
  super-blocks on JAX / torch).

Each mode writes a JSON result to OUTPUT/result.json (or result-<task>.json).
"""

import argparse
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np

if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf

STEPS_PER_EPOCH = 4


def _split_cpu(count):
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
    )


def _data(size, seed, batch=8):
    from tests.search.data import clip_dataset

    return clip_dataset(size, batch, crop=8, seed=seed)


def run(output, kill_at):
    import keras

    from tests.search.spaces import search_space
    from tsnet_keras.search import run_search_step

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

    class Count(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.batches += 1

    callbacks = [Count()]
    if kill_at:
        class Kill(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(self.model.search_step.numpy()) == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

        callbacks.append(Kill())
    result = run_search_step(
        1, search_space(), _data(32, 0), _data(16, 1), output, num_classes=5, crop=8,
        epochs=2, steps_per_epoch=STEPS_PER_EPOCH, checkpoint_every=2, seed=7,
        logits_learning_rate=0.05, learning_rate=0.05, verbose=0, tensorboard=False,
        callbacks=callbacks, score="log_likelihood",
    )
    logits = {k: list(map(float, v)) for k, v in
              zip(result.distribution.keys, result.distribution.logits_numpy())}
    _write(output, "result.json", {"logits": logits, "history": result.history,
                                   "batches_run": Count.batches})


def mirrored(output):
    from keras import ops

    from tests.search.spaces import search_space
    from tsnet_keras.search import ParsecSearch, search_dataset

    _split_cpu(2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def recording_score(y_true, logits, indices):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        tf.print("SAMPLE", replica, indices, summarize=-1, output_stream=sys.stdout)
        return ops.mean(ops.cast(ops.equal(ops.argmax(logits, -1), ops.cast(y_true, "int64")),
                                 "float32"))

    with strategy.scope():
        search = ParsecSearch(search_space(), 5, crop=8, samples_per_replica=1,
                              score=recording_score, target_macs=40_000)
        search.compile(learning_rate=0.05, logits_learning_rate=0.05)
    data = search_dataset(_data(32, 0).repeat(), _data(16, 1))
    history = search.fit(data, steps_per_epoch=STEPS_PER_EPOCH, epochs=1, verbose=0).history
    replicas = {}
    for key, variable in zip(search.distribution.keys, search.distribution.logits):
        replicas[key] = [np.asarray(v).tolist() for v in _local_values(strategy, variable)]
    moving = search.supernet.plan_layers[1].expand_bn.moving_mean
    _write(output, "result.json", {
        "replicas": strategy.num_replicas_in_sync,
        "logits": replicas,
        "history": {k: [float(x) for x in v] for k, v in history.items()},
        "step": int(search.search_step.numpy()),
        "moving_mean": [np.asarray(v).tolist() for v in _local_values(strategy, moving)],
    })


def _local_values(strategy, variable):
    """Per-replica copies of a Keras variable (its tf.distribute variable's components)."""
    return strategy.experimental_local_results(variable.value)


def multiworker(output, steps):
    from tests.search.spaces import search_space
    from tsnet_keras.search import ParsecSearch, custom_search_loop, search_dataset

    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        search = ParsecSearch(search_space(), 5, crop=8, samples_per_replica=1,
                              target_macs=40_000)
        search.compile(learning_rate=0.05, logits_learning_rate=0.05)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = search_dataset(_data(64, 0, batch=8).repeat(), _data(32, 1, batch=8)).with_options(options)
    logs = custom_search_loop(search, strategy, data, steps)
    logits = {k: list(map(float, v)) for k, v in
              zip(search.distribution.keys, search.distribution.logits_numpy())}
    _write(output, f"result-{task}.json", {"logits": logits, "logs": logs,
                                           "step": int(search.search_step.numpy())})


def mwsearch(output, kill_at, fresh_worker=-1):
    import keras

    from tests.search.spaces import search_space
    from tsnet_keras.data import dataset as dataset_module
    from tsnet_keras.data import video_dataset, worker_shard
    from tsnet_keras.search import run_search_step

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    decoded = []
    read = dataset_module._ClipLoader._read

    def recording_read(self, path, select, short_side):
        decoded.append(os.path.basename(path))
        return read(self, path, select, short_side)

    dataset_module._ClipLoader._read = recording_read
    with open(os.path.join(output, "videos.json")) as handle:
        videos = json.load(handle)
    common = dict(format="frames", crop_size=8, jitter=(8, 10), sparse_frames=4, sparse_stride=2,
                  dense_frames=None, target_fps=None, source_fps=30.0, num_parallel_calls=1,
                  shard=worker_shard(strategy))
    train = video_dataset(videos["train"], mode="train", batch_size=2, seed=3, **common)
    heldout = video_dataset(videos["heldout"], mode="val", batch_size=1, **common)
    class Count(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.batches += 1
            if kill_at and int(self.model.search_step.numpy()) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [Count()]
    try:
        result = run_search_step(
            1, search_space(), train, heldout, os.path.join(output, "search"), num_classes=5,
            crop=8, epochs=2, steps_per_epoch=2, checkpoint_every=1, seed=7, strategy=strategy,
            samples_per_replica=1, logits_learning_rate=0.05, learning_rate=0.05, verbose=0,
            tensorboard=False, score="log_likelihood", callbacks=callbacks,
            resume=task != fresh_worker,
        )
    except RuntimeError as error:  # exit at once: no wait for the cluster's shutdown barrier
        print(f"RuntimeError: {error}", flush=True)
        os._exit(3)
    logits = {k: list(map(float, v)) for k, v in
              zip(result.distribution.keys, result.distribution.logits_numpy())}
    _write(output, f"result-{task}.json", {"logits": logits, "history": result.history,
                                           "decoded": sorted(set(decoded)),
                                           "batches_run": Count.batches})


def _record_decodes():
    """Patches the video reader to list the videos this process decodes."""
    from tsnet_keras.data import dataset as dataset_module

    decoded = []
    read = dataset_module._ClipLoader._read

    def recording_read(self, path, select, short_side):
        decoded.append(os.path.basename(path))
        return read(self, path, select, short_side)

    dataset_module._ClipLoader._read = recording_read
    return decoded


def mwretrain(output):
    import hashlib

    from tsnet_keras import recipes
    from tsnet_keras.spaces import get_space

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    decoded = _record_decodes()
    data = recipes.resolve_data("", os.path.join(output, "train.txt"),
                                os.path.join(output, "val.txt"), verbose=False)
    arch = get_space("auto_tsnet_mini").single_stream().sample(0)
    outcome = recipes.retrain(arch, os.path.join(output, "retrain"), data=data, epochs=2,
                              batch_size=2, crop=32, warmup_epochs=0, strategy=strategy,
                              verbose=0)
    weights = {weight.path: hashlib.sha256(np.asarray(weight.numpy()).tobytes()).hexdigest()
               for weight in outcome.model.trainable_weights}
    _write(output, f"result-{task}.json", {"weights": weights,
                                           "history": outcome.history,
                                           "decoded": sorted(set(decoded))})


def mwrecipe(output):
    from tsnet_keras import recipes

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    decoded = _record_decodes()
    data = recipes.resolve_data("", os.path.join(output, "train.txt"),
                                os.path.join(output, "val.txt"), verbose=False)
    outcome = recipes.search_step(1, os.path.join(output, "step1"), data=data, epochs=2,
                                  steps_per_epoch=0, batch_size=4, crop=32, heldout_fraction=0.34,
                                  # 0.003 GFLOPs: reachable (smallest 0.0019), far below the
                                  # uniform mean (0.0073): the hinge moves the logits at every step
                                  # (the held-out clips all score 0, so ranks alone do not)
                                  samples_per_replica=2, target_gflops=0.003, strategy=strategy,
                                  snapshot_every=1, verbose=0)
    distribution = outcome.result.distribution
    logits = {k: list(map(float, v)) for k, v in
              zip(distribution.keys, distribution.logits_numpy())}
    _write(output, f"result-{task}.json", {"logits": logits, "history": outcome.result.history,
                                           "decoded": sorted(set(decoded))})


def equal(output):
    import keras

    from tests.search.spaces import tiny_two_stream
    from tests.search.test_supernet import (
        _inputs,
        _randomize,
        _two_stream_architectures,
    )
    from tsnet_keras.models import build_model
    from tsnet_keras.search.supernet import Supernet

    space = tiny_two_stream()
    supernet = Supernet(space, num_classes=5)
    _randomize(supernet, 1)
    differences = []
    for arch in _two_stream_architectures(space)[2:]:  # sampling and strided-conv fusion
        model = build_model(arch, num_classes=5, crop=16)
        supernet.copy_to_model(model, arch)
        x = _inputs(arch)
        for training in (False, True):
            got = supernet(x, indices=supernet.indices_of(arch), training=training,
                           update_statistics=False)
            want = model(x, training=training)
            difference = keras.ops.convert_to_numpy(got) - keras.ops.convert_to_numpy(want)
            differences.append(float(np.abs(difference).max()))
    _write(output, "result.json", {"backend": keras.backend.backend(),
                                   "dynamic_shapes": supernet.dynamic_shapes,
                                   "max_difference": max(differences)})


def _write(output, name, payload):
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, name), "w") as handle:
        json.dump(payload, handle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("run", "mirrored", "multiworker", "mwsearch", "mwretrain",
                                         "mwrecipe", "equal"))
    parser.add_argument("output")
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--fresh-worker", type=int, default=-1)  # mwsearch: resume=False there
    args = parser.parse_args()
    if args.mode == "run":
        run(args.output, args.kill_at)
    elif args.mode == "mirrored":
        mirrored(args.output)
    elif args.mode == "mwrecipe":
        mwrecipe(args.output)
    elif args.mode == "mwretrain":
        mwretrain(args.output)
    elif args.mode == "mwsearch":
        mwsearch(args.output, args.kill_at, args.fresh_worker)
    elif args.mode == "equal":
        equal(args.output)
    else:
        multiworker(args.output, args.steps)

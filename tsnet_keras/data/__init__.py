"""Video data: readers, PyAV decoding, two-stream clip sampling, augmentation, test views.

Entry point: `video_dataset(list_file, data_root, mode, batch_size, ...)` returns
a `tf.data.Dataset` of `({"sparse": (B, 4, 160, 160, 3), "dense": (B, 32, 160,
160, 3)}, label)` batches. `make_synthetic_dataset()` writes a small built-in
dataset whose classes need motion. See docs/data.md.

Modules:
    lists      annotation readers (list files, Kinetics CSV, SSv2 JSON)
    decode     PyAV decoding of the needed frames only (videos, JPEG folders)
    sampling   which frames each stream sees
    augment    one random crop/flip per clip, normalisation
    views      multi-view test: aggregation per video, top-k accuracy
    failures   counting unreadable videos
    options    tf.data options of every dataset handed to Keras (autotuning off)
    tfrecord   TFRecord shards of JPEG frames
    synthetic  the built-in synthetic dataset
    dataset    `video_dataset`
"""

import importlib

# Names are loaded on first use, so that `tsnet_keras.data.synthetic` (and the
# processes that generate videos) do not import TensorFlow.
_EXPORTS = {
    "KINETICS_MEAN": "augment",
    "KINETICS_STD": "augment",
    "detect_format": "dataset",
    "load_video_list": "dataset",
    "video_dataset": "dataset",
    "worker_shard": "dataset",
    "DecodedFrames": "decode",
    "VideoDecodeError": "decode",
    "read_frame_folder": "decode",
    "read_video": "decode",
    "DecodeFailures": "failures",
    "TooManyFailuresError": "failures",
    "KINETICS_PATH_TEMPLATE": "lists",
    "VideoList": "lists",
    "VideoRecord": "lists",
    "kinetics_class_subset": "lists",
    "read_kinetics_csv": "lists",
    "read_list_file": "lists",
    "read_ssv2_json": "lists",
    "records_from_pairs": "lists",
    "select_classes": "lists",
    "ClipSampler": "sampling",
    "SyntheticDataset": "synthetic",
    "make_synthetic_dataset": "synthetic",
    "write_video": "synthetic",
    "without_autotune": "options",
    "TFRecordShards": "tfrecord",
    "write_tfrecords": "tfrecord",
    "VideoScores": "views",
    "aggregate_views": "views",
    "collect_view_scores": "views",
    "evaluate_views": "views",
    "top_k_accuracy": "views",
}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"tsnet_keras.data.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tsnet_keras.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "KINETICS_MEAN",
    "KINETICS_PATH_TEMPLATE",
    "KINETICS_STD",
    "ClipSampler",
    "DecodeFailures",
    "DecodedFrames",
    "SyntheticDataset",
    "TFRecordShards",
    "TooManyFailuresError",
    "VideoDecodeError",
    "VideoList",
    "VideoRecord",
    "VideoScores",
    "aggregate_views",
    "collect_view_scores",
    "detect_format",
    "evaluate_views",
    "kinetics_class_subset",
    "load_video_list",
    "make_synthetic_dataset",
    "read_frame_folder",
    "read_kinetics_csv",
    "read_list_file",
    "read_ssv2_json",
    "read_video",
    "records_from_pairs",
    "select_classes",
    "top_k_accuracy",
    "video_dataset",
    "worker_shard",
    "write_tfrecords",
    "write_video",
]

"""The recipes' data parameters: the built-in synthetic dataset or your own list files.

`resolve_data(data_root, train_list, val_list)` turns the three notebook
parameters into a `RecipeData`:

- both lists empty: the built-in synthetic dataset (written once into the cache,
  `tsnet_keras.data.make_synthetic_dataset`);
- otherwise both lists, in any format `video_dataset` reads (PySlowFast list
  file `path label`, Kinetics CSV, SSv2 JSON, TFRecord shards; detected from the
  file), with relative paths joined to `data_root`. The number of classes comes
  from the labels (class names of Kinetics/SSv2, else the largest label + 1).

Every mistake that can be seen before training is a ValueError naming the
parameter: a missing list file, a `data_root` that is not a folder, a list with
no readable-looking path, validation labels outside the training classes.
Unreadable videos found later are skipped and counted (`RecipeData.failures`).

Scale jitter follows the crop: for the synthetic dataset its recommended
arguments scaled by `crop / 112`; for other data X3D's (short side 182-228 for
crop 160, test short side 182) scaled by `crop / 160`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import numpy as np

from tsnet_keras.checks import ArgumentTypeError, fail
from tsnet_keras.data.failures import DecodeFailures
from tsnet_keras.data.lists import VideoList

logger = logging.getLogger("tsnet_keras.recipes")

# X3D / PySlowFast at crop 160: train short side in [182, 228], test short side 182.
X3D_JITTER = (182 / 160, 228 / 160)
# Val-mode clips (one centre clip and crop: the same at every pass) are decoded once and kept
# in memory when they take at most this many MB: the search's held-out cycle
# (`RecipeData.heldout_batches`: 6 MB at the step-1 recipe's defaults, 54 MB at step 2's)
# and the retrain's validation set (`in_memory_if_small`: 30 MB for a step-1 architecture at
# the retrain recipe's defaults, 270 MB for a two-stream one).
DECODED_CACHE_MB = 512


@dataclasses.dataclass
class RecipeData:
    """The training and validation videos of a recipe run.

    Attributes:
        train, val: `VideoList` (paths joined to the data root) or, for TFRecord
            shards, the shard path / pattern.
        num_classes: int.
        classes: tuple of class names or None.
        format: the detected annotation format ("list", "kinetics", "ssv2", "tfrecord").
        synthetic: bool. The built-in synthetic dataset.
        source: dict. `data_root`, `train_list`, `val_list` as given (for reports).
        failures: `DecodeFailures` shared by every dataset this object builds.
        jitter_scale: (low, high) short-side range of training jitter, as
            multiples of the crop; `test_scale` the test short side likewise.
        flip: bool or None. Random horizontal flip in training; None leaves
            `video_dataset`'s default (on, off for SSv2). False for the synthetic
            dataset, whose classes include the direction of motion.
    """

    train: object
    val: object
    num_classes: int
    classes: tuple | None
    format: str
    synthetic: bool
    source: dict
    failures: DecodeFailures = dataclasses.field(default_factory=lambda: DecodeFailures())
    jitter_scale: tuple = X3D_JITTER
    test_scale: float = X3D_JITTER[0]
    flip: bool | None = None

    # --------------------------------------------------------------- sizes
    def sizes(self, crop: int) -> dict:
        """`video_dataset` keyword arguments for a training crop of `crop` pixels."""
        low = max(crop, round(crop * self.jitter_scale[0]))
        high = max(low, round(crop * self.jitter_scale[1]))
        return {"crop_size": crop, "jitter": (low, high),
                "test_short_side": max(crop, round(crop * self.test_scale))}

    @property
    def num_train_videos(self):
        return len(self.train) if isinstance(self.train, VideoList) else None

    @property
    def num_val_videos(self):
        return len(self.val) if isinstance(self.val, VideoList) else None

    # -------------------------------------------------------------- datasets
    def dataset(self, split, mode: str, *, crop: int, batch_size: int, frames=(4, 32), seed=0,
                videos=None, **kwargs):
        """A `video_dataset` of `split` ("train" or "val") or of `videos`.

        Args:
            split: "train" or "val".
            mode: "train", "val" or "test" (see `video_dataset`).
            crop: int. Crop of train / val mode (test mode: see `test_dataset`).
            batch_size: int. Global batch.
            frames: (sparse frames, dense frames or None): single-stream when
                the second is None.
            seed: int. Seed of shuffling, clip positions and augmentation.
            videos: a `VideoList` to read instead of the split.
            **kwargs: any other `video_dataset` argument.
        """
        from tsnet_keras.data.dataset import video_dataset

        source = videos if videos is not None else (self.train if split == "train" else self.val)
        arguments = dict(self.sizes(crop))
        if self.flip is not None:
            arguments["flip"] = self.flip
        sparse_frames, dense_frames = frames
        arguments.update(sparse_frames=sparse_frames, dense_frames=dense_frames or None,
                         seed=seed, failures=self.failures, num_classes=self.num_classes)
        if dense_frames:
            # The sparse stream's window (4 x 16 = 64 frames) also holds the dense 32 x 2.
            arguments.setdefault("dense_stride", 2)
        arguments.update(kwargs)
        return video_dataset(source, None, mode, batch_size, **arguments)

    def heldout_batches(self, videos: VideoList, *, crop: int, batch_size: int, frames=(4, 32),
                        seed=0, cache_mb=DECODED_CACHE_MB, **kwargs):
        """Held-out batches cycled by position: a callable `start_batch -> dataset`.

        A cycle is `len(videos) // batch_size` val-mode batches (the remainder
        dropped), batch k holding videos `[k * batch_size, (k + 1) * batch_size)`.
        The dataset for `start_batch` reads the list rotated to that batch, so
        reaching a position decodes nothing (`run_search_step` repeats it).
        Val mode is deterministic (one centre clip and crop), so every cycle
        decodes the same clips: when a cycle's decoded batches take at most
        `cache_mb` MB, the first call decodes the cycle once and every call
        then serves it from memory (`cache_mb=0`: decode every cycle).

        Raises:
            ValueError: fewer videos than `batch_size`.
        """
        if not isinstance(videos, VideoList):
            raise ValueError(f"`videos` must be a VideoList, got {type(videos).__name__}.")
        per_cycle = len(videos) // batch_size
        if per_cycle < 1:
            raise ValueError(f"the {len(videos)} held-out videos do not fill one batch of "
                             f"{batch_size}.")
        usable = videos.records[: per_cycle * batch_size]

        def from_position(start_batch):
            offset = (int(start_batch) % per_cycle) * batch_size
            rotated = VideoList(usable[offset:] + usable[:offset], videos.classes)
            return self.dataset("val", "val", crop=crop, batch_size=batch_size, frames=frames,
                                seed=seed, videos=rotated, drop_remainder=True, **kwargs)

        cycle = from_position(0)
        if _decoded_megabytes(cycle, len(usable)) <= cache_mb:
            from_position = _cycle_in_memory(cycle, len(usable))
        from_position.batches_per_cycle = per_cycle
        return from_position

    def describe(self) -> dict:
        """What `metrics.json` records about the data."""
        return {
            **self.source,
            "synthetic": self.synthetic,
            "format": self.format,
            "num_classes": self.num_classes,
            "train_videos": self.num_train_videos,
            "val_videos": self.num_val_videos,
            "decode_attempts": self.failures.num_attempts,
            "failed_decodes": self.failures.num_failed,
            "failed_files": self.failures.failed_files,
        }


def _clip_megabytes(dataset) -> float:
    """MB of one clip and its label in the batches of `dataset`, from its element spec."""
    import tensorflow as tf

    specs = tf.nest.flatten(dataset.element_spec)
    values = [spec.shape[1:].num_elements() for spec in specs]  # None: a size known at run time
    if None in values:
        return float("inf")
    return sum(n * spec.dtype.size for n, spec in zip(values, specs)) / 2**20


def _decoded_megabytes(dataset, num_clips) -> float:
    """MB of `num_clips` decoded clips of `dataset` (inf when `num_clips` is None: not known)."""
    return float("inf") if num_clips is None else _clip_megabytes(dataset) * num_clips


def in_memory_if_small(dataset, num_clips, what, cache_mb=DECODED_CACHE_MB):
    """`dataset` kept in memory after its first full pass (`Dataset.cache`) when its
    `num_clips` clips take at most `cache_mb` MB; else, or when `num_clips` is None (not
    known), `dataset` as it is. Only for val-mode data: every pass decodes the same clips."""
    megabytes = _decoded_megabytes(dataset, num_clips)
    if megabytes > cache_mb:
        return dataset
    logger.info("%s: %d clips decoded at the first pass, then kept in memory (%.1f MB at most)",
                what, num_clips, megabytes)
    return dataset.cache()


def _cycle_in_memory(cycle, num_videos):
    """`start_batch -> dataset` of the batches of `cycle` (one cycle's dataset), rotated to
    `start_batch`: decoded once, at the first call, and served from memory."""
    import tensorflow as tf

    dataset, size = None, 0

    def from_position(start_batch):
        nonlocal dataset, size
        if dataset is None:
            batches = [tf.nest.map_structure(np.asarray, batch) for batch in cycle]
            if not batches:
                raise ValueError(f"none of the {num_videos} held-out videos gave a batch: they "
                                 "could not be decoded (see the decode failures logged above).")
            stacked = tf.nest.map_structure(lambda *parts: np.stack(parts), *batches)
            logger.info("held-out: %d batches decoded once, kept in memory (%.1f MB)",
                        len(batches), sum(a.nbytes for a in tf.nest.flatten(stacked)) / 2**20)
            dataset, size = tf.data.Dataset.from_tensor_slices(stacked), len(batches)
        offset = int(start_batch) % size
        return dataset.skip(offset).concatenate(dataset.take(offset))

    return from_position


def console_logging() -> None:
    """Shows the recipes' INFO messages on stdout (a notebook's output) unless logging is set up.

    Does nothing when the application configured logging (a handler on the root
    or the `tsnet_keras` logger).
    """
    package = logging.getLogger("tsnet_keras")
    if package.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package.addHandler(handler)
    package.setLevel(logging.INFO)


def stream_frames(arch_or_space) -> tuple:
    """(sparse frames, dense frames or None) of an `Architecture` or a space."""
    dense = arch_or_space.dense
    return arch_or_space.sparse.frames, (dense.frames if dense is not None else None)


# ------------------------------------------------------------------------ resolve
def _check_text(name, value) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, os.PathLike)):
        fail(name, "a path (str)", value, error=ArgumentTypeError)
    return os.path.expanduser(os.fspath(value))


def _read(name, path, data_root, classes=None) -> VideoList:
    from tsnet_keras.data.dataset import load_video_list

    try:
        return load_video_list(path, data_root or None, classes=classes)
    except FileNotFoundError as error:
        raise ValueError(f"`{name}`: {error}") from None
    except ValueError as error:
        raise ValueError(f"`{name}` {path!r} cannot be read: {error}") from None


def _check_paths_exist(name, path, videos: VideoList, data_root):
    present = sum(os.path.exists(record.path) for record in videos)
    if present == 0:
        example = videos[0].path
        raise ValueError(
            f"none of the {len(videos)} videos listed in `{name}` ({path!r}) exists (first: "
            f"{example!r}); check `data_root` ({data_root!r}) and the paths in the list."
        )
    return len(videos) - present


def resolve_data(data_root="", train_list="", val_list="", num_classes: int = 0,
                 synthetic_root=None, verbose: bool = True) -> RecipeData:
    """The recipes' data parameters as a `RecipeData` (see the module docstring).

    Args:
        data_root: str. Folder that relative paths in the lists are joined to
            ("" : paths as written).
        train_list, val_list: str. Annotation files; both "" for the built-in
            synthetic dataset.
        num_classes: int. 0 reads it from the labels (needed > 0 for TFRecords,
            whose labels are not read ahead).
        synthetic_root: folder of the synthetic dataset (default: the cache).
        verbose: log a one-line summary (INFO, shown on stdout unless logging
            is configured: `console_logging`).

    Raises:
        ValueError: naming the parameter, for anything wrong before training.
    """
    data_root = _check_text("data_root", data_root)
    train_list = _check_text("train_list", train_list)
    val_list = _check_text("val_list", val_list)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
        raise ValueError(f"`num_classes` must be an int >= 0 (0: from the labels), got {num_classes!r}.")
    if data_root and not os.path.isdir(data_root):
        raise ValueError(f"`data_root` {data_root!r} is not a folder.")

    if not train_list and not val_list:
        data = _synthetic_data(data_root, num_classes, synthetic_root, verbose)
    else:
        fmt = _list_format(train_list, val_list)
        source = {"data_root": data_root, "train_list": train_list, "val_list": val_list}
        if fmt == "tfrecord":
            if not num_classes:
                raise ValueError("`num_classes` must be given (> 0) for TFRecord shards.")
            data = RecipeData(train=train_list, val=val_list, num_classes=num_classes, classes=None,
                              format=fmt, synthetic=False, source=source)
        else:
            data = _annotation_data(data_root, train_list, val_list, num_classes, fmt, source)
    if verbose:
        what = "built-in synthetic dataset" if data.synthetic else f"{data.format} annotations"
        counts = (f"{data.num_train_videos} train / {data.num_val_videos} val videos"
                  if data.num_train_videos is not None else "TFRecord shards")
        console_logging()
        logger.info("data: %s, %s, %d classes (%s)", what, counts, data.num_classes,
                    data.source["data_root"])
    return data


def _synthetic_data(data_root, num_classes, synthetic_root, verbose) -> RecipeData:
    """The built-in synthetic dataset (written into the cache on first use)."""
    from tsnet_keras.data.synthetic import make_synthetic_dataset

    if data_root:
        raise ValueError("`data_root` is set but `train_list` and `val_list` are empty; give "
                         "both lists, or leave all three empty for the synthetic dataset.")
    if verbose:
        console_logging()
        logger.info("data: the built-in synthetic dataset (written into the cache on first "
                    "use, in about a minute)")
    synthetic = make_synthetic_dataset(synthetic_root, verbose=False)
    if num_classes and num_classes != synthetic.num_classes:
        raise ValueError(f"`num_classes` is {num_classes} but the synthetic dataset has "
                         f"{synthetic.num_classes} classes; leave it 0.")
    recommended = synthetic.recommended
    crop = recommended["crop_size"]
    jitter = tuple(v / crop for v in recommended["jitter"])
    return RecipeData(
        train=_read("train_list", synthetic.train_list, synthetic.root),
        val=_read("val_list", synthetic.val_list, synthetic.root),
        num_classes=synthetic.num_classes, classes=synthetic.classes, format="list",
        synthetic=True,
        source={"data_root": synthetic.root, "train_list": synthetic.train_list,
                "val_list": synthetic.val_list},
        jitter_scale=jitter, test_scale=recommended["test_short_side"] / crop,
        flip=recommended.get("flip"),
    )


def _list_format(train_list, val_list) -> str:
    """The format both lists share ("tfrecord" or an annotation format)."""
    from tsnet_keras.data.dataset import detect_format

    for name, value in (("train_list", train_list), ("val_list", val_list)):
        if not value:
            other = "val_list" if name == "train_list" else "train_list"
            raise ValueError(f"`{name}` is empty but `{other}` is set; give both (or neither, "
                             "for the synthetic dataset).")
    formats = {}
    for name, value in (("train_list", train_list), ("val_list", val_list)):
        formats[name] = detect_format(value)
        if formats[name] != "tfrecord" and not os.path.isfile(value):
            raise ValueError(f"`{name}` {value!r} is not a file.")
    if formats["train_list"] != formats["val_list"]:
        raise ValueError(f"`train_list` is a {formats['train_list']} file but `val_list` a "
                         f"{formats['val_list']} file; use the same format.")
    return formats["train_list"]


def _annotation_data(data_root, train_list, val_list, num_classes, fmt, source) -> RecipeData:
    """Both annotation lists read and checked (labels, existing files)."""
    train = _read("train_list", train_list, data_root)
    if len(train) == 0:
        raise ValueError(f"`train_list` {train_list!r} lists no videos.")
    val = _read("val_list", val_list, data_root, classes=train.classes)
    if len(val) == 0:
        raise ValueError(f"`val_list` {val_list!r} lists no videos.")
    num_classes = _check_labels(train, val, train_list, val_list, num_classes)
    for name, path, videos in (("train_list", train_list, train), ("val_list", val_list, val)):
        missing = _check_paths_exist(name, path, videos, data_root)
        if missing:
            logger.warning("%d of the %d videos of `%s` do not exist; they will be "
                           "skipped and counted as failed.", missing, len(videos), name)
    return RecipeData(train=train, val=val, num_classes=num_classes,
                      classes=train.classes, format=fmt, synthetic=False, source=source)


def _check_labels(train: VideoList, val: VideoList, train_list, val_list, num_classes) -> int:
    """The number of classes, after checking both lists' labels against it."""
    labels = train.labels
    if (labels < 0).any():
        raise ValueError(f"`train_list` {train_list!r} has unlabelled videos (label -1).")
    found = len(train.classes) if train.classes else int(labels.max()) + 1
    missing = sorted(set(range(found)) - set(labels.tolist()))
    if not train.classes and not num_classes and missing:
        raise ValueError(
            f"`train_list` {train_list!r} has labels up to {found - 1} but no video of "
            f"{len(missing)} label(s) below it (e.g. {missing[:5]}): a typo in a label? "
            f"Labels must be 0..num_classes-1; if classes really have no training "
            f"video, pass `num_classes`."
        )
    if num_classes and num_classes < found:
        raise ValueError(f"`num_classes` is {num_classes} but `train_list` has labels up to "
                         f"{found - 1}.")
    num_classes = num_classes or found
    if (val.labels >= num_classes).any():
        raise ValueError(f"`val_list` {val_list!r} has labels >= {num_classes}, the number "
                         "of classes of `train_list`.")
    if (val.labels < 0).any():
        raise ValueError(f"`val_list` {val_list!r} has unlabelled videos (label -1); "
                         "evaluation needs labels.")
    return num_classes


def split_heldout(videos: VideoList, fraction: float, seed: int = 0) -> tuple:
    """Splits a training list into (search-train, held-out) per class, reproducibly.

    PARSEC scores sampled architectures on held-out batches (paper section 4.1);
    they come from the training set so that the validation set stays unseen
    until evaluation. Each class keeps at least one training video; the
    held-out videos are shuffled so that every held-out batch mixes classes.

    Args:
        videos: `VideoList`.
        fraction: float in (0, 1). Share of each class held out.
        seed: int.

    Returns:
        (train `VideoList`, held-out `VideoList`).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"`heldout_fraction` must be in (0, 1), got {fraction!r}.")
    rng = np.random.default_rng(seed)
    labels = videos.labels
    heldout = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(len(members) - 1, int(round(fraction * len(members))))
        heldout.extend(rng.permutation(members)[:max(count, 0)].tolist())
    if not heldout:
        raise ValueError(f"`heldout_fraction` {fraction} holds out no video of {len(videos)}; "
                         "raise it or give more videos.")
    chosen = set(heldout)
    train = tuple(r for i, r in enumerate(videos.records) if i not in chosen)
    held = tuple(videos.records[i] for i in rng.permutation(sorted(chosen)))
    return VideoList(train, videos.classes), VideoList(held, videos.classes)


__all__ = ["DECODED_CACHE_MB", "RecipeData", "in_memory_if_small", "resolve_data", "split_heldout",
           "stream_frames"]

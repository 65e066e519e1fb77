"""Multi-view testing: per-video aggregation of view scores and top-k accuracy.

The test protocol of X3D and Auto-TSNet scores every video from several views,
`num_clips` clips uniformly spaced in time x `num_crops` spatial crops:

- "10-Center": 10 clips x 1 centre crop (short side 182, crop 160);
- "10-LeftCenterRight": 10 clips x 3 crops (short side = crop = 182, crops at
  the start, centre and end of the longer axis).

`video_dataset(..., mode="test")` yields one element per view with its
`video_id` and `view_id = clip * num_crops + crop`; `aggregate_views` averages
(or sums) the scores of each video, whatever order the views come in.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tsnet_keras.checks import check_choice

REDUCTIONS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class VideoScores:
    """Scores aggregated per video.

    Args:
        video_ids: int array `(videos,)`, sorted.
        scores: float array `(videos, classes)`.
        labels: int array `(videos,)` or None.
        num_views: int array `(videos,)`, views that contributed to each video.
    """

    video_ids: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None
    num_views: np.ndarray

    def accuracy(self, top_k=(1, 5)) -> dict:
        """`{"top1": ..., "top5": ...}` over the videos (needs labels)."""
        if self.labels is None:
            raise ValueError("VideoScores.accuracy: no labels were given to aggregate_views.")
        return top_k_accuracy(self.scores, self.labels, top_k)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def aggregate_views(
    scores,
    video_ids,
    view_ids=None,
    labels=None,
    reduction: str = "mean",
    apply_softmax: bool = True,
) -> VideoScores:
    """Combines the scores of all views of each video.

    The result does not depend on the order of the views: views are sorted by
    `(video_id, view_id)` before they are summed, so even the floating-point
    rounding is the same.

    Args:
        scores: float array `(views, classes)`: logits or probabilities.
        video_ids: int array `(views,)`.
        view_ids: int array `(views,)` or None. With view ids, a repeated
            `(video_id, view_id)` pair raises an error.
        labels: int array `(views,)` or None. Must agree within a video.
        reduction: `"mean"` (default) or `"sum"`.
        apply_softmax: bool. Turn logits into probabilities first (mean of
            softmax, PySlowFast's default); False combines the scores as given.

    Returns:
        `VideoScores` with one row per video, sorted by video id.

    Example:

    >>> logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
    >>> result = aggregate_views(logits, video_ids=[7, 7, 3], labels=[0, 0, 1])
    >>> result.video_ids.tolist(), result.scores.argmax(-1).tolist()
    ([3, 7], [1, 0])
    """
    scores = np.asarray(scores, dtype=np.float64)
    video_ids = np.asarray(video_ids).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != video_ids.shape[0]:
        raise ValueError(
            f"aggregate_views: `scores` must be (views, classes) with one row per video id, "
            f"got {scores.shape} and {video_ids.shape[0]} ids."
        )
    check_choice("reduction", reduction, REDUCTIONS, where="aggregate_views")
    check_duplicates = view_ids is not None
    view_ids = np.zeros_like(video_ids) if view_ids is None else np.asarray(view_ids).reshape(-1)
    if view_ids.shape != video_ids.shape:
        raise ValueError(f"aggregate_views: `view_ids` {view_ids.shape} and `video_ids` {video_ids.shape} differ.")
    order = np.lexsort((view_ids, video_ids))
    video_ids, view_ids, scores = video_ids[order], view_ids[order], scores[order]
    if check_duplicates:
        repeated = np.flatnonzero((np.diff(video_ids) == 0) & (np.diff(view_ids) == 0))
        if repeated.size:
            index = int(repeated[0])
            raise ValueError(f"aggregate_views: view {view_ids[index]} of video {video_ids[index]} appears twice.")
    if apply_softmax:
        scores = softmax(scores)
    unique, starts, counts = np.unique(video_ids, return_index=True, return_counts=True)
    if len(unique):
        sums = np.add.reduceat(scores, starts, axis=0)
    else:
        sums = np.zeros((0, scores.shape[1]))
    combined = sums / counts[:, None] if reduction == "mean" else sums
    video_labels = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)[order]
        video_labels = labels[starts]
        for video, start, count in zip(unique, starts, counts):
            if np.any(labels[start : start + count] != labels[start]):
                raise ValueError(f"aggregate_views: views of video {video} have different labels.")
    return VideoScores(unique, combined, video_labels, counts)


def top_k_accuracy(scores, labels, top_k=(1, 5)) -> dict:
    """Fraction of rows whose label is among the k highest scores.

    Ties are broken by class index (lower first), like a stable sort.

    Args:
        scores: float array `(samples, classes)`.
        labels: int array `(samples,)`.
        top_k: int or tuple of ints.

    Returns:
        `{"top1": float, "top5": float, ...}`; k larger than the number of
        classes counts every sample as correct.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"top_k_accuracy: `scores` {scores.shape} and `labels` {labels.shape} do not match.")
    ks = (top_k,) if isinstance(top_k, int) else tuple(top_k)
    if scores.shape[0] == 0:
        return {f"top{k}": float("nan") for k in ks}
    ranking = np.argsort(-scores, axis=1, kind="stable")
    rank_of_label = np.argmax(ranking == labels[:, None], axis=1)
    return {f"top{k}": float(np.mean(rank_of_label < k)) for k in ks}


def collect_view_scores(model, dataset, verbose: bool = False):
    """Runs `model` over a test-mode `video_dataset` and keeps the ids of every view.

    Args:
        model: a Keras model (or any callable with `predict_on_batch`).
        dataset: elements `(inputs, label, {"video_id", "view_id"})`.
        verbose: bool. Show a progress bar.

    Returns:
        dict of NumPy arrays `scores (views, classes)`, `labels`, `video_ids`,
        `view_ids`.
    """
    from tqdm.auto import tqdm

    scores, labels, video_ids, view_ids = [], [], [], []
    for inputs, label, ids in tqdm(dataset, disable=not verbose, desc="test views"):
        scores.append(np.asarray(model.predict_on_batch(inputs)))
        labels.append(np.asarray(label))
        video_ids.append(np.asarray(ids["video_id"]))
        view_ids.append(np.asarray(ids["view_id"]))
    if not scores:
        raise ValueError("collect_view_scores: the dataset yielded no views.")
    return {
        "scores": np.concatenate(scores),
        "labels": np.concatenate(labels),
        "video_ids": np.concatenate(video_ids),
        "view_ids": np.concatenate(view_ids),
    }


def evaluate_views(model, dataset, reduction: str = "mean", apply_softmax: bool = True, top_k=(1, 5), verbose: bool = False) -> dict:
    """Multi-view accuracy of `model` on a test-mode `video_dataset`.

    Returns:
        dict with `top1`, `top5`, ..., `num_videos` and `num_views`.

    Example:

    >>> test = video_dataset("val.csv", "videos", mode="test", num_views=10, num_crops=3)  # doctest: +SKIP
    >>> evaluate_views(model, test)  # doctest: +SKIP
    {'top1': 0.74, 'top5': 0.91, 'num_videos': 19796, 'num_views': 593880}
    """
    views = collect_view_scores(model, dataset, verbose=verbose)
    videos = aggregate_views(
        views["scores"], views["video_ids"], views["view_ids"], views["labels"], reduction, apply_softmax
    )
    result = videos.accuracy(top_k)
    result.update(num_videos=int(len(videos.video_ids)), num_views=int(views["scores"].shape[0]))
    return result

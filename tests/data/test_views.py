"""Per-video aggregation of view scores and top-k accuracy."""

import numpy as np
import pytest

from tsnet_keras.data.views import aggregate_views, evaluate_views, softmax, top_k_accuracy


def random_views(rng, videos=5, views=30, classes=7):
    video_ids = np.repeat(np.arange(videos) * 10 + 3, views)
    view_ids = np.tile(np.arange(views), videos)
    scores = rng.normal(size=(videos * views, classes)) * 3
    labels = np.repeat(rng.integers(0, classes, videos), views)
    return scores, video_ids, view_ids, labels


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("apply_softmax", [True, False])
def test_aggregation_does_not_depend_on_view_order(rng, reduction, apply_softmax):
    scores, video_ids, view_ids, labels = random_views(rng)
    reference = aggregate_views(scores, video_ids, view_ids, labels, reduction, apply_softmax)
    for _ in range(3):
        order = rng.permutation(len(scores))
        shuffled = aggregate_views(scores[order], video_ids[order], view_ids[order], labels[order], reduction,
                                   apply_softmax)
        np.testing.assert_array_equal(shuffled.scores, reference.scores)  # bit-identical
        np.testing.assert_array_equal(shuffled.video_ids, reference.video_ids)
        np.testing.assert_array_equal(shuffled.labels, reference.labels)


def test_mean_of_softmax_and_sum_match_numpy(rng):
    scores, video_ids, view_ids, labels = random_views(rng, videos=3, views=4)
    result = aggregate_views(scores, video_ids, view_ids, labels)
    probabilities = softmax(scores).reshape(3, 4, -1)
    np.testing.assert_allclose(result.scores, probabilities.mean(axis=1))
    np.testing.assert_allclose(result.scores.sum(axis=1), 1.0)
    summed = aggregate_views(scores, video_ids, reduction="sum", apply_softmax=False)
    np.testing.assert_allclose(summed.scores, scores.reshape(3, 4, -1).sum(axis=1))
    assert result.num_views.tolist() == [4, 4, 4] and result.video_ids.tolist() == [3, 13, 23]


def test_aggregation_errors(rng):
    scores, video_ids, view_ids, labels = random_views(rng, videos=2, views=2)
    with pytest.raises(ValueError, match="appears twice"):
        aggregate_views(scores, video_ids, np.zeros_like(view_ids))
    bad_labels = labels.copy()
    bad_labels[0] += 1
    with pytest.raises(ValueError, match="different labels"):
        aggregate_views(scores, video_ids, view_ids, bad_labels)
    with pytest.raises(ValueError, match="reduction"):
        aggregate_views(scores, video_ids, reduction="max")


def test_top_k_accuracy():
    scores = np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    labels = np.array([2, 0, 1, 1])
    # ranks of the labels: 1, 0, 2 (tied with class 0, which goes first), 2
    assert top_k_accuracy(scores, labels, (1, 2, 3, 5)) == {"top1": 0.25, "top2": 0.5, "top3": 1.0, "top5": 1.0}
    assert top_k_accuracy(scores, labels, 1) == {"top1": 0.25}
    with pytest.raises(ValueError, match="do not match"):
        top_k_accuracy(scores, labels[:2])


def test_evaluate_views_with_a_model(rng):
    scores, video_ids, view_ids, labels = random_views(rng, videos=4, views=3, classes=5)

    class FixedModel:
        def predict_on_batch(self, inputs):
            return np.asarray(inputs)

    batches = [
        (scores[start : start + 5], labels[start : start + 5],
         {"video_id": video_ids[start : start + 5], "view_id": view_ids[start : start + 5]})
        for start in range(0, len(scores), 5)
    ]
    result = evaluate_views(FixedModel(), batches)
    expected = aggregate_views(scores, video_ids, view_ids, labels).accuracy()
    assert result == {**expected, "num_videos": 4, "num_views": 12}

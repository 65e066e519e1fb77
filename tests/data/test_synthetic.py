"""The built-in synthetic dataset: files, caching, atomic writes, and class semantics."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tsnet_keras.data import synthetic
from tsnet_keras.data.decode import read_video

TINY = {"num_classes": 4, "videos_per_class": 2, "val_videos_per_class": 1, "width": 64, "height": 48,
        "num_frames": 24, "workers": 1, "verbose": False}


def test_writes_videos_and_list_files(tmp_path):
    data = synthetic.make_synthetic_dataset(tmp_path / "syn", **TINY)
    assert data.num_classes == 4 and len(data.descriptions) == 4
    assert data.classes[1] == "red-disc_right_wobble"
    assert "wobbling" in data.descriptions[1] and data.factors[1]["direction"] == "right"
    train_lines = open(data.train_list).read().split("\n")[:-1]
    assert len(train_lines) == 8 and len(open(data.val_list).read().split("\n")[:-1]) == 4
    path, label = train_lines[-1].rsplit(" ", 1)
    assert label == "3" and os.path.isfile(os.path.join(data.root, path))
    decoded = read_video(os.path.join(data.root, path), lambda n: np.arange(n))
    assert decoded.num_frames == 24 and decoded.frames.shape[1:] == (48, 64, 3)
    assert data.recommended == {"crop_size": 40, "jitter": [40, 48], "test_short_side": 40, "flip": False}
    inputs, labels = next(iter(data.dataset("train", batch_size=2, seed=0)))
    assert inputs["sparse"].shape == (2, 4, 40, 40, 3) and inputs["dense"].shape == (2, 32, 40, 40, 3)


def test_generated_once_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TSNET_KERAS_CACHE", str(tmp_path))
    first = synthetic.make_synthetic_dataset(**TINY)
    assert os.path.dirname(first.root) == str(tmp_path) and os.path.basename(first.root).startswith("synthetic-")
    marker = os.path.join(first.root, "dataset.json")
    stamp = os.stat(marker).st_mtime_ns

    def fail(job):
        raise AssertionError("must not regenerate")

    monkeypatch.setattr(synthetic, "_write_one", fail)
    again = synthetic.make_synthetic_dataset(**TINY)
    assert again == first and os.stat(marker).st_mtime_ns == stamp
    other = dict(TINY, seed=1)
    with pytest.raises(AssertionError, match="must not regenerate"):
        synthetic.make_synthetic_dataset(**other)  # other parameters -> another folder
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(first.root)]  # no half dataset left


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def write_then_die(job):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original(job)

    original = synthetic._write_one
    monkeypatch.setattr(synthetic, "_write_one", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        synthetic.make_synthetic_dataset(tmp_path / "syn", **TINY)
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(synthetic, "_write_one", original)
    data = synthetic.make_synthetic_dataset(tmp_path / "syn", **TINY)
    assert json.load(open(os.path.join(data.root, "dataset.json")))["params"]["num_classes"] == 4


def object_track(frames, colour):
    """Centroid (x, y) of the pixels that have exactly the class colour, per frame."""
    track = []
    for frame in frames:
        rows, cols = np.nonzero(np.all(frame == colour, axis=-1))
        track.append((cols.mean(), rows.mean()))
    return np.array(track)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wobble_is_invisible_at_the_sparse_stride_and_visible_when_dense(seed):
    wobble = synthetic.class_factors(8)[1]
    assert wobble["wobble"] and wobble["direction"] == "right"
    steady = dict(wobble, wobble=False)
    tracks = {}
    for name, factors in (("wobble", wobble), ("steady", steady)):
        colour = synthetic.video_parameters(factors, np.random.default_rng(seed))["colour"]
        frames = synthetic.render_video(factors, np.random.default_rng(seed))
        tracks[name] = object_track(frames, colour)
    across = tracks["wobble"][:, 1]  # moving right: the wobble is vertical
    for start in (0, 7, 20):
        assert np.ptp(across[start : start + 64 : 16]) < 1.0  # sparse stride 16: same phase, looks straight
        assert np.ptp(across[start : start + 64 : 2]) > 6.0  # dense stride 2: the oscillation (4-6 px)
    assert np.ptp(tracks["steady"][:, 1]) < 1.0
    # both move right at the same speed: the sparse stream sees the same path up to an offset
    np.testing.assert_allclose(np.diff(tracks["wobble"][::16, 0]), np.diff(tracks["steady"][::16, 0]), atol=1.0)


@pytest.mark.parametrize("num_classes", [3, 6, 100, True])
def test_invalid_class_counts(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        synthetic.class_grid(num_classes)


def test_parallel_generation_from_a_script_without_main_guard(tmp_path):
    # A spawn-based pool would re-run this script in every worker and break.
    script = tmp_path / "make.py"
    script.write_text(
        "import sys\n"
        "from tsnet_keras.data.synthetic import make_synthetic_dataset\n"
        f"data = make_synthetic_dataset(sys.argv[1], **{dict(TINY, workers=2)!r})\n"
        "print('ROOT', data.root)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "syn")], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ROOT {tmp_path / 'syn'}" in result.stdout
    lines = open(tmp_path / "syn" / "train.csv").read().split()
    paths = [os.path.join(tmp_path, "syn", path) for path in lines[::2]]
    assert len(paths) == 8
    for path in paths:
        assert read_video(path, lambda n: np.arange(n)).num_frames == 24


def test_failing_worker_is_reported():
    jobs = [("/nonexistent-dir/\0bad.mp4", synthetic.class_factors(4)[0], [0], 64, 48, 4, 30.0, 16)] * 2
    with pytest.raises(RuntimeError, match="generation worker failed"):
        synthetic._run_jobs(jobs, workers=2, verbose=False)


def red_centroid_x(clip):
    """x centroid of the red class shape in each frame of a de-normalised clip."""
    red = (clip[..., 0] > 0.6) & (clip[..., 1] < 0.4) & (clip[..., 2] < 0.4)
    columns = np.arange(clip.shape[2])[None, None, :]
    return (red * columns).sum(axis=(1, 2)) / np.maximum(red.sum(axis=(1, 2)), 1), red.sum(axis=(1, 2))


def test_training_clips_keep_the_direction_of_motion(tmp_path):
    # Version 1 of the recommended arguments left random flips on, which turned
    # half of the "right" clips into "left" ones: direction was label noise.
    from tsnet_keras.data import augment
    from tsnet_keras.recipes.data import resolve_data

    params = dict(TINY, videos_per_class=6, val_videos_per_class=0, num_frames=48)
    root = synthetic.make_synthetic_dataset(tmp_path / "syn", **params).root
    data = resolve_data(synthetic_root=root, verbose=False)
    assert data.flip is False
    mean, std = np.array(augment.KINETICS_MEAN), np.array(augment.KINETICS_STD)

    def agreement(**kwargs):
        stream = data.dataset("train", "train", crop=40, batch_size=4, frames=(4, None), sparse_stride=8,
                              seed=3, **kwargs)
        agree = total = 0
        for _ in range(3):  # three epochs of random clips, crops and flips
            for clips, labels in stream:
                for clip, label in zip(clips.numpy() * std + mean, labels.numpy()):
                    x, pixels = red_centroid_x(clip)
                    if pixels.min() < 20:  # the shape left the crop: no reliable centroid
                        continue
                    moving_right = data.classes[label].split("_")[1] == "right"
                    agree += (x[-1] > x[0]) == moving_right
                    total += 1
        assert total >= 20
        return agree / total

    assert agreement() == 1.0
    assert agreement(flip=True) < 0.85  # the check sees flips when they happen

"""Checkpoints, resume after kill -9, and tf.distribute (each in fresh processes)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.search.spaces import search_space
from tsnet_keras.search import ParsecSearch
from tsnet_keras.search import checkpoint as checkpoint_module
from tsnet_keras.search.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    read_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(*args, env=None):
    environment = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    environment.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "tests.search.search_worker", *map(str, args)],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def _result(directory, name="result.json"):
    with open(os.path.join(directory, name)) as handle:
        return json.load(handle)


def test_checkpoint_round_trip_restores_weights_logits_and_optimizers(tmp_path):
    search = ParsecSearch(search_space(), 5, crop=8)
    search.compile()
    state = checkpoint_module._groups(search)
    rng = np.random.default_rng(0)
    for variables in state.values():
        for v in variables:
            v.assign(rng.normal(size=v.shape).astype(v.dtype) if v.dtype.startswith("float")
                     else np.full(v.shape, 7, v.dtype))
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(search, path, {"step": 7})
    saved = {g: [np.asarray(v).copy() for v in vs] for g, vs in state.items()}
    for variables in state.values():
        for v in variables:
            v.assign(np.zeros(v.shape, v.dtype))
    assert load_checkpoint(search, path) == {"step": 7}
    for group, variables in state.items():
        assert len(variables) > 1
        for v, value in zip(variables, saved[group]):
            np.testing.assert_array_equal(np.asarray(v), value)
    # Another search (other space) is refused without touching anything.
    other = ParsecSearch(search_space(channels=((8, 16), (8, 16, 24))), 5, crop=8)
    other.compile()
    with pytest.raises(ValueError, match="another search|has shape"):
        load_checkpoint(other, path)


def test_every_save_reads_the_values_of_its_own_search_at_that_moment(tmp_path):
    # The values are read by one traced call kept per search: never a stale or another's read.
    searches = [ParsecSearch(search_space(), 5, crop=8) for _ in range(2)]
    for search in searches:
        search.compile()
    for fill in (1, 2):
        for number, search in enumerate(searches):
            groups = checkpoint_module._groups(search)
            for variables in groups.values():
                for v in variables:
                    v.assign(np.full(v.shape, 10 * fill + number, v.dtype))
            path = tmp_path / f"{number}.npz"
            save_checkpoint(search, path, {"fill": fill})
            arrays = read_checkpoint(path)["arrays"]
            assert len(arrays) == sum(len(variables) for variables in groups.values()) > 100
            for group, variables in groups.items():
                for index, v in enumerate(variables):
                    expected = np.full(v.shape, 10 * fill + number, v.dtype)
                    np.testing.assert_array_equal(arrays[f"{group}/{index:05d}"], expected)


def test_a_crash_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    search = ParsecSearch(search_space(), 5, crop=8)
    search.compile()
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(search, path, {"step": 1})
    good = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(search, path, {"step": 2})
    assert path.read_bytes() == good
    assert read_checkpoint_meta(path) == {"step": 1}
    assert os.listdir(tmp_path) == [CHECKPOINT_FILE]  # no temp file left


def test_search_killed_mid_run_resumes_to_the_same_distribution(tmp_path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    # 8 steps, checkpoints every 2; the second run is killed after step 5.
    reference = _worker("run", uninterrupted)
    killed = _worker("run", interrupted, "--kill-at", 5)
    code, output = _finish(killed)
    assert code == -signal.SIGKILL, output
    meta = read_checkpoint_meta(interrupted / CHECKPOINT_FILE)
    assert meta["step"] == 4 and not meta["completed"]
    resumed = _worker("run", interrupted)
    for process in (reference, resumed):
        code, output = _finish(process)
        assert code == 0, output
    want, got = _result(uninterrupted), _result(interrupted)
    for key, logits in want["logits"].items():
        np.testing.assert_allclose(got["logits"][key], logits, atol=1e-5)
    assert max(abs(v) for logits in want["logits"].values() for v in logits) > 1e-3
    assert [row["step"] for row in got["history"]] == [4, 8]
    # The resumed process ran steps 5-8 only (it did not start over).
    assert want["batches_run"] == 8 and got["batches_run"] == 4


def test_mirrored_strategy_keeps_logits_identical_and_samples_per_replica(tmp_path):
    code, output = _finish(_worker("mirrored", tmp_path))
    assert code == 0, output
    result = _result(tmp_path)
    assert result["replicas"] == 2 and result["step"] == 4
    for key, replicas in result["logits"].items():
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1], err_msg=key)
    assert any(abs(v) > 1e-4 for replicas in result["logits"].values() for v in replicas[0])
    # Each step, each replica printed the architecture it scored: they differ.
    samples = {}
    for line in output.splitlines():
        if line.startswith("SAMPLE"):
            _, replica, indices = line.split(" ", 2)
            samples.setdefault(int(replica), []).append(indices)
    assert len(samples[0]) == len(samples[1]) == 4
    assert sum(a != b for a, b in zip(samples[0], samples[1])) >= 3


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_strategy_on_loopback(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(_worker("multiworker", tmp_path, "--steps", 4,
                                 env={"TF_CONFIG": json.dumps(config)}))
    for process in processes:
        code, output = _finish(process, timeout=600)
        assert code == 0, output
    first, second = _result(tmp_path, "result-0.json"), _result(tmp_path, "result-1.json")
    assert first["step"] == second["step"] == 4
    for key, logits in first["logits"].items():
        np.testing.assert_array_equal(second["logits"][key], logits)
    assert any(abs(v) > 1e-4 for logits in first["logits"].values() for v in logits)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_masked_super_blocks_equal_fixed_models_on_other_backends(tmp_path, backend):
    pytest.importorskip(backend)
    code, output = _finish(_worker("equal", tmp_path, env={"KERAS_BACKEND": backend}),
                           timeout=900)
    assert code == 0, output
    result = _result(tmp_path)
    assert result["backend"] == backend and result["dynamic_shapes"] is False
    assert result["max_difference"] < 1e-5


def _frame_videos(folder, count, prefix):
    """`count` folders of 12 JPEG frames (12 x 12), labels 0..4: [(path, label), ...]."""
    from PIL import Image

    rng = np.random.default_rng(len(prefix) + count)
    videos = []
    for index in range(count):
        clip = folder / f"{prefix}{index}"
        clip.mkdir(parents=True)
        for frame in range(12):
            pixels = rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(clip / f"img_{frame + 1:05d}.jpg", quality=95)
        videos.append((str(clip), index % 5))
    return videos


def _multi_worker_search(folder, *extra, mode="mwsearch"):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(_worker(mode, folder, *extra, env={"TF_CONFIG": json.dumps(config)}))
    return [_finish(process, timeout=600) for process in processes]


@pytest.mark.slow
def test_run_search_step_on_two_loopback_workers_shards_and_resumes(tmp_path):
    """Two workers (TF_CONFIG, localhost): each decodes only its share of the list, both
    end with the same distribution, the chief alone writes, and a run killed after
    step 3 (on both workers) resumes from its step-3 checkpoint to the same result."""
    videos = {"train": _frame_videos(tmp_path / "frames", 8, "train"),
              "heldout": _frame_videos(tmp_path / "frames", 4, "heldout")}
    runs = {name: tmp_path / name for name in ("whole", "killed")}
    for folder in runs.values():
        folder.mkdir()
        (folder / "videos.json").write_text(json.dumps(videos))
    for code, output in _multi_worker_search(runs["whole"]):
        assert code == 0, output
    first, second = (_result(runs["whole"], f"result-{task}.json") for task in (0, 1))
    for key, logits in first["logits"].items():
        np.testing.assert_array_equal(second["logits"][key], logits)
    assert max(abs(v) for logits in first["logits"].values() for v in logits) > 1e-4
    for task, result in enumerate((first, second)):
        share = {os.path.basename(path) for path, _ in videos["train"][task::2]
                 + videos["heldout"][task::2]}
        assert set(result["decoded"]) == share, (task, result["decoded"])
        assert [row["step"] for row in result["history"]] == [2, 4]
    search = runs["whole"] / "search"
    assert read_checkpoint_meta(search / CHECKPOINT_FILE)["completed"]
    assert json.loads((search / "history.json").read_text()) == first["history"]

    for code, output in _multi_worker_search(runs["killed"], "--kill-at", 3):
        assert code == -signal.SIGKILL, output
    assert read_checkpoint_meta(runs["killed"] / "search" / CHECKPOINT_FILE)["step"] == 3
    # A worker that would start over while the other resumes: both stop, naming the steps.
    mismatch = tmp_path / "mismatch"
    shutil.copytree(runs["killed"], mismatch)
    for code, output in _multi_worker_search(mismatch, "--fresh-worker", 1):
        assert code == 3 and "start from different steps (0 and 3)" in output, output
    for code, output in _multi_worker_search(runs["killed"]):
        assert code == 0, output
    resumed = _result(runs["killed"], "result-0.json")
    for key, logits in first["logits"].items():
        np.testing.assert_allclose(resumed["logits"][key], logits, atol=1e-5)
    assert [row["step"] for row in resumed["history"]] == [2, 4]
    assert first["batches_run"] == 4 and resumed["batches_run"] == 1  # steps 4 only


@pytest.mark.slow
def test_retrain_on_two_loopback_workers(tmp_path):
    """`recipes.retrain` on two workers: each decodes its share of both lists, the trained
    weights end identical (BN moving statistics are each worker's own, as with one machine's
    replicas), the chief writes the outputs and every epoch has its history row."""
    lists = {"train": _frame_videos(tmp_path / "frames", 8, "train"),
             "val": _frame_videos(tmp_path / "frames", 4, "val")}
    for split, videos in lists.items():
        (tmp_path / f"{split}.txt").write_text("".join(f"{p} {label}\n" for p, label in videos))
    for code, output in _multi_worker_search(tmp_path, mode="mwretrain"):
        assert code == 0, output
    first, second = (_result(tmp_path, f"result-{task}.json") for task in (0, 1))
    assert len(first["weights"]) > 50 and first["weights"] == second["weights"]
    for task, result in enumerate((first, second)):
        share = {os.path.basename(p) for p, _ in lists["train"][task::2] + lists["val"][task::2]}
        assert set(result["decoded"]) == share, (task, result["decoded"])
        assert [row["step"] for row in result["history"]] == [4, 8]
        assert all("val_loss" in row for row in result["history"])
    out = tmp_path / "retrain"
    assert (out / "model.keras").exists() and (out / "metrics.json").exists()
    assert json.loads((out / "history.json").read_text()) == first["history"]


@pytest.mark.slow
def test_search_step_recipe_on_two_loopback_workers(tmp_path):
    """`recipes.search_step` on two workers: the training and held-out lists are split
    between them (each video decoded by one worker only), the distribution is identical
    on both, and the chief writes the recipe's files."""
    lists = {"train": _frame_videos(tmp_path / "frames", 12, "train"),
             "val": _frame_videos(tmp_path / "frames", 4, "val")}
    for split, videos in lists.items():
        (tmp_path / f"{split}.txt").write_text("".join(f"{p} {label}\n" for p, label in videos))
    for code, output in _multi_worker_search(tmp_path, mode="mwrecipe"):
        assert code == 0, output
    first, second = (_result(tmp_path, f"result-{task}.json") for task in (0, 1))
    for key, logits in first["logits"].items():
        np.testing.assert_array_equal(second["logits"][key], logits)
    assert max(abs(v) for logits in first["logits"].values() for v in logits) > 1e-4
    assert not set(first["decoded"]) & set(second["decoded"])
    everything = {os.path.basename(p) for p, _ in lists["train"]}
    assert set(first["decoded"]) | set(second["decoded"]) == everything
    # 5 of the 12 videos held out (one per class): 7 left, 3 in the smaller worker share,
    # so 1 full batch of 2 per worker and epoch, on both workers alike.
    assert [row["step"] for row in first["history"]] == [1, 2]
    assert [row["step"] for row in second["history"]] == [1, 2]
    out = tmp_path / "step1"
    for name in ("metrics.json", "distribution_history.json", "architecture.json"):
        assert (out / name).exists(), name

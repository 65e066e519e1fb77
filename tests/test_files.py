"""Atomic writes: the target is the old file or the new one, never half; killed writes are cleaned."""

import os

import pytest

from tsnet_keras.engine import remove_stale_temp_files as engine_remove_stale_temp_files
from tsnet_keras.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temp_files,
    temp_path,
)


def test_a_write_replaces_the_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new \u00b2")
    assert target.read_text(encoding="utf-8") == "new \u00b2"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("good")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temp:
            with open(temp, "w") as handle:
                handle.write("half")
            raise KeyboardInterrupt("killed mid-write")
    assert target.read_text() == "good"
    assert os.listdir(tmp_path) == ["state.json"]


def test_keep_previous_moves_the_old_file_aside(tmp_path):
    target, previous = tmp_path / "checkpoint.npz", tmp_path / "checkpoint.previous.npz"
    atomic_write_bytes(target, b"first", keep_previous=previous)
    assert not previous.exists()
    atomic_write_bytes(target, b"second", keep_previous=previous)
    assert (target.read_bytes(), previous.read_bytes()) == (b"second", b"first")


def test_the_temp_file_is_hidden_beside_the_target_with_the_suffix(tmp_path):
    temp = temp_path(tmp_path / "model.weights.h5", suffix=".weights.h5")
    assert os.path.dirname(temp) == str(tmp_path)
    assert os.path.basename(temp) == f".model.weights.h5.tmp-{os.getpid()}.weights.h5"


def test_temp_files_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    current = [temp_path(tmp_path / name, suffix) for name, suffix in
               [("history.json", ""), ("checkpoint.npz", ""), ("step-000000003.weights.h5", ".weights.h5"),
                ("videos-00000-of-00001.tfrecord", "")]]
    older = [str(tmp_path / name) for name in
             ("history.json.tmp-99999", ".checkpoint.npz.tmp-99999", ".tmp-99999.weights.h5")]
    kept = [str(tmp_path / name) for name in
            ("history.json", "checkpoint.npz", "step-000000003.weights.h5", "notes.tmp")]
    for path in current + older + kept:
        with open(path, "w") as handle:
            handle.write("x")
    assert sorted(remove_stale_temp_files(tmp_path)) == sorted(current + older)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(path) for path in kept)
    assert engine_remove_stale_temp_files is remove_stale_temp_files


def test_a_write_into_a_missing_folder_fails_leaving_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "missing" / "metrics.json", "{}")
    assert os.listdir(tmp_path) == []

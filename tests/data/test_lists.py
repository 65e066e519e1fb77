"""Annotation readers on files written by the tests."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.data.video_files import write_index_video
from tsnet_keras.data import (
    detect_format,
    kinetics_class_subset,
    read_kinetics_csv,
    read_list_file,
    read_ssv2_json,
    records_from_pairs,
    select_classes,
    video_dataset,
)

SMALL = {"crop_size": 32, "jitter": (40, 48), "sparse_frames": 2, "sparse_stride": 8, "dense_frames": 8, "dense_stride": 2}


@pytest.mark.parametrize("separator", [" ", ","])
def test_list_file_space_or_comma(tmp_path, separator):
    lines = [f"a/one.mp4{separator}3", "", "# comment", f"/abs/two.mp4{separator}0"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    videos = read_list_file(tmp_path / "list.txt", data_root="root")
    assert videos.paths == [os.path.join("root", "a/one.mp4"), "/abs/two.mp4"]
    assert videos.labels.tolist() == [3, 0]
    assert videos[0].video_id == "one"


def test_list_file_paths_with_spaces_and_frame_counts(tmp_path):
    (tmp_path / "list.txt").write_text("my clips/a b.mp4 4\nframes/x 120 2\n")
    videos = read_list_file(tmp_path / "list.txt")
    assert videos[0].path == "my clips/a b.mp4" and videos[0].label == 4
    assert videos[1].path == "frames/x" and videos[1].num_frames == 120 and videos[1].label == 2


def test_list_file_errors_name_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_text("a.mp4 1\nb.mp4 cat\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 2: label"):
        read_list_file(tmp_path / "bad.txt")
    (tmp_path / "nolabel.txt").write_text("a.mp4\n")
    with pytest.raises(ValueError, match="line 1"):
        read_list_file(tmp_path / "nolabel.txt")
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        read_list_file(tmp_path / "absent.txt")


def test_python_pairs_and_their_errors():
    videos = records_from_pairs([("x.mp4", 1), ("y.mp4", np.int64(2))], data_root="r")
    assert videos.paths == [os.path.join("r", "x.mp4"), os.path.join("r", "y.mp4")]
    with pytest.raises(ValueError, match=r"list_file\[0\]"):
        records_from_pairs([("x.mp4", "dog")])


KINETICS_ROWS = [
    ("abseiling", "aaa", 10, 20, "train"),
    ("zumba", "bbb", 0, 10, "train"),
    ("air drumming", "ccc", 125, 135, "train"),
    ("zumba", "ddd", 3, 13, "train"),
]


def write_kinetics(tmp_path, video_source):
    lines = ["label,youtube_id,time_start,time_end,split"]
    for label, youtube_id, start, end, split in KINETICS_ROWS:
        lines.append(f"{label},{youtube_id},{start},{end},{split}")
        shutil.copy(video_source, tmp_path / f"{youtube_id}_{start:06d}_{end:06d}.mp4")
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.csv"


def test_kinetics_csv_maps_rows_to_clip_files(tmp_path, video_dir):
    csv_file = write_kinetics(tmp_path, video_dir / "long.mp4")
    videos = read_kinetics_csv(csv_file, data_root=tmp_path)
    assert videos.classes == ("abseiling", "air drumming", "zumba")
    assert videos.labels.tolist() == [0, 2, 1, 2]
    assert videos[2].path == os.path.join(tmp_path, "ccc_000125_000135.mp4")
    assert all(os.path.isfile(path) for path in videos.paths)
    assert detect_format(csv_file) == "kinetics"
    templated = read_kinetics_csv(csv_file, "k", path_template="{split}/{label_dir}/{youtube_id}.mp4")
    assert templated[2].path == os.path.join("k", "train", "air_drumming", "ccc.mp4")
    # video_dataset reads the CSV and its clips directly
    dataset = video_dataset(csv_file, tmp_path, mode="val", batch_size=4, **SMALL)
    _, labels = next(iter(dataset))
    assert labels.numpy().tolist() == [0, 2, 1, 2]


def test_kinetics_unlabelled_split_and_bad_files(tmp_path):
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nqqq,5,15,test\n")
    videos = read_kinetics_csv(tmp_path / "test.csv")
    assert videos.labels.tolist() == [-1] and videos[0].path == "qqq_000005_000015.mp4"
    (tmp_path / "bad.csv").write_text("label,youtube_id,split\nx,y,train\n")
    with pytest.raises(ValueError, match="time_start"):
        read_kinetics_csv(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="not in `classes`"):
        read_kinetics_csv(_one_row(tmp_path), classes=["other"])


def test_kinetics_csv_with_a_header_only_is_empty_and_a_bad_header_is_still_refused(tmp_path):
    (tmp_path / "empty.csv").write_text("label,youtube_id,time_start,time_end,split\n")
    videos = read_kinetics_csv(tmp_path / "empty.csv", classes=["a", "b"])
    assert len(videos) == 0 and videos.classes == ("a", "b")
    (tmp_path / "bad_header.csv").write_text("label,youtube_id,split\n")
    with pytest.raises(ValueError, match="time_start"):
        read_kinetics_csv(tmp_path / "bad_header.csv")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(ValueError, match="lacks the column"):
        read_kinetics_csv(tmp_path / "blank.csv")


def _one_row(tmp_path):
    (tmp_path / "one.csv").write_text("label,youtube_id,time_start,time_end,split\nzumba,x,0,10,val\n")
    return tmp_path / "one.csv"


def test_minikinetics_class_subset_is_seeded():
    classes = [f"class {index:03d}" for index in range(400)]
    subset = kinetics_class_subset(classes, 100, seed=0)
    assert len(subset) == 100 and len(set(subset)) == 100 and list(subset) == sorted(subset)
    assert subset == kinetics_class_subset(list(reversed(classes)), 100, seed=0)
    assert subset != kinetics_class_subset(classes, 100, seed=1)
    with pytest.raises(ValueError, match="num_classes"):
        kinetics_class_subset(classes, 401)


def test_select_classes_relabels(tmp_path, video_dir):
    videos = read_kinetics_csv(write_kinetics(tmp_path, video_dir / "long.mp4"), tmp_path)
    mini = select_classes(videos, ["zumba", "abseiling"])
    assert mini.classes == ("zumba", "abseiling")
    assert [(os.path.basename(record.path)[:3], record.label) for record in mini] == [
        ("aaa", 1), ("bbb", 0), ("ddd", 0)
    ]


def write_ssv2(tmp_path):
    labels = {"Pushing something from left to right": "0", "Putting something next to something": "1"}
    train = [
        {"id": "11", "template": "Putting [something] next to [something]", "label": "putting a cup next to a pen",
         "placeholders": ["a cup", "a pen"]},
        {"id": "12", "template": "Pushing [something] from left to right", "label": "pushing a cup from left to right",
         "placeholders": ["a cup"]},
    ]
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "test.json").write_text(json.dumps([{"id": "13"}]))
    for video_id in ("11", "12", "13"):
        write_index_video(tmp_path / f"{video_id}.webm", 24, codec="libvpx-vp9", gop_size=None)


def test_ssv2_json_with_webm_videos(tmp_path):
    write_ssv2(tmp_path)
    videos = read_ssv2_json(tmp_path / "train.json", tmp_path / "something-something-v2-labels.json", tmp_path)
    assert videos.labels.tolist() == [1, 0]
    assert videos[0].path == os.path.join(tmp_path, "11.webm") and videos[0].video_id == "11"
    assert videos.classes[1] == "Putting something next to something"
    unlabelled = read_ssv2_json(tmp_path / "test.json", tmp_path / "something-something-v2-labels.json", tmp_path)
    assert unlabelled.labels.tolist() == [-1]
    # auto-detected, labels file found next to the split file, webm decoded
    assert detect_format(tmp_path / "train.json") == "ssv2"
    dataset = video_dataset(tmp_path / "train.json", tmp_path, mode="train", batch_size=2, seed=0, **SMALL)
    inputs, label = next(iter(dataset))
    assert inputs["dense"].shape == (2, 8, 32, 32, 3) and sorted(label.numpy().tolist()) == [0, 1]
    assert dataset.failures.num_failed == 0


def test_ssv2_unknown_template(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Holding something": "0"}))
    (tmp_path / "val.json").write_text(json.dumps([{"id": "1", "template": "Dropping [something]"}]))
    with pytest.raises(ValueError, match="Dropping"):
        read_ssv2_json(tmp_path / "val.json", tmp_path / "labels.json")
    with pytest.raises(FileNotFoundError, match="labels_file"):
        read_ssv2_json(tmp_path / "val.json", tmp_path / "none.json")


def test_list_file_gaps_bom_spaces_odd_labels_and_encoding(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("\ufeffa.mp4 1\nmy  clips/two   spaces.mp4 2\n".encode("utf-8"))
    videos = read_list_file(path)
    assert videos.paths == ["a.mp4", "my  clips/two   spaces.mp4"]  # no BOM, spaces kept
    for label in ("1e3", "-7", "1.0", str(10**20)):
        path.write_text(f"a.mp4 0\nb.mp4 {label}\n")
        with pytest.raises(ValueError, match=r"list.txt, line 2: label"):
            read_list_file(path)
    path.write_text("a.mp4 -1\n")
    assert read_list_file(path).labels.tolist() == [-1]  # unlabelled
    path.write_bytes("caf\xe9.mp4 1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"list.txt.*not UTF-8"):
        read_list_file(path)


def test_labels_beyond_num_classes_are_refused_before_decoding():
    from tsnet_keras.data.dataset import video_dataset

    pairs = [("a.mp4", 0), ("missing/b.mp4", 5), ("c.mp4", -1)]
    with pytest.raises(ValueError, match=r"1 label\(s\) outside \[0, 3\).*missing/b.mp4.*label 5"):
        video_dataset(pairs, mode="val", num_classes=3)
    video_dataset(pairs, mode="val", num_classes=6)  # in range (and -1, unlabelled): accepted

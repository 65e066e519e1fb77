"""Readers that turn annotation files into lists of `(path, label)` records.

Every reader returns a `VideoList`: a tuple of `VideoRecord`s plus the class
names where the format has them. Supported formats:

- PySlowFast list files: `path label` per line, space or comma separated
  (`path num_frames label` is accepted too, as written for frame folders);
- Kinetics CSV annotations (`label,youtube_id,time_start,time_end,split`),
  mapped to the usual clip file names, and `kinetics_class_subset` for the
  paper's MiniKinetics-100;
- Something-Something-V2 label and split JSON files;
- a Python list of `(path, label)` pairs.

Folders of JPEG frames use the list-file format with a folder as the path;
TFRecord shards are read by `tsnet_keras.data.tfrecord`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

KINETICS_PATH_TEMPLATE = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    Args:
        path: str. Path of the video file, JPEG frame folder or TFRecord entry.
        label: int. Class index; -1 for unlabelled (test split) videos.
        video_id: str. A name for reports (defaults to the file name).
        num_frames: int or None. Frame count where the list file gives it.
    """

    path: str
    label: int
    video_id: str = ""
    num_frames: int | None = None

    def __post_init__(self):
        if not self.video_id:
            name = os.path.basename(os.path.normpath(self.path))
            object.__setattr__(self, "video_id", os.path.splitext(name)[0])


@dataclasses.dataclass(frozen=True)
class VideoList:
    """The videos of one split and, where known, the class names.

    Args:
        records: tuple of `VideoRecord`.
        classes: tuple of str or None. `classes[label]` is the name of a label.

    Example:

    >>> videos = read_list_file("train.csv", data_root="videos")  # doctest: +SKIP
    >>> len(videos), videos[0].path, videos[0].label  # doctest: +SKIP
    """

    records: tuple[VideoRecord, ...]
    classes: tuple[str, ...] | None = None

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, index):
        return self.records[index]

    @property
    def paths(self) -> list[str]:
        return [record.path for record in self.records]

    @property
    def labels(self) -> np.ndarray:
        return np.array([record.label for record in self.records], dtype=np.int64)


def _join(data_root, path: str) -> str:
    path = os.path.expanduser(path)
    if data_root is None or os.path.isabs(path):
        return path
    return os.path.join(os.fspath(data_root), path)


def _parse_int(text: str, field: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is not None and value.is_integer():
            return int(value)
        raise ValueError(f"{where}: {field} must be an integer, got {text!r}.") from None


LABEL_LIMIT = 2**31  # labels index classes: int32 in the models


def _parse_label(text: str, where: str) -> int:
    """A class label: a plain integer in [-1, 2**31) (-1: unlabelled)."""
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ValueError(f"{where}: label must be a whole number written in digits, got "
                         f"{text!r}.")
    label = int(text)
    if not -1 <= label < LABEL_LIMIT:
        raise ValueError(f"{where}: label must be in [-1, {LABEL_LIMIT}) (-1: unlabelled), "
                         f"got {text}.")
    return label


def _read_text_lines(path: str, caller: str) -> list:
    """The lines of a UTF-8 text file (a byte-order mark is dropped); errors name the file."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return handle.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{caller}: {path!r} is not UTF-8 text (byte {error.start}: "
                         f"{error.reason}); save it as UTF-8.") from None
    except OSError as error:
        raise OSError(f"{caller}: cannot read {path!r}: {error}") from error


def read_list_file(list_file, data_root=None, separator: str | None = None) -> VideoList:
    """Reads a PySlowFast list file: one `path label` per line.

    Fields are separated by a comma or by white space (detected per file from
    the first line, or given by `separator`). With white space, the label is the
    last field, so paths may contain spaces. A line `path num_frames label`
    (three fields, the last two integers) also gives the frame count, the usual
    form for folders of extracted frames. Empty lines and lines starting with
    `#` are skipped.

    Args:
        list_file: str or path-like. The list file.
        data_root: str, path-like or None. Folder that relative paths are joined
            to.
        separator: `","`, `" "` or None (detect).

    Returns:
        `VideoList` (no class names).

    Raises:
        FileNotFoundError: the list file does not exist.
        ValueError: a line has no label or the label is not an integer; the
            message names the file and line.
    """
    list_file = os.fspath(list_file)
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"read_list_file: list file {list_file!r} does not exist.")
    if separator not in (None, ",", " "):
        raise ValueError(f"read_list_file: `separator` must be ',', ' ' or None, got {separator!r}.")
    records = []
    lines = _read_text_lines(list_file, "read_list_file")
    sep = separator
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{list_file}, line {number}"
        if sep is None:
            sep = "," if "," in line else " "
        fields = [field.strip() for field in (line.split(",") if sep == "," else line.split())]
        if len(fields) < 2:
            raise ValueError(f"{where}: expected 'path label', got {raw!r}.")
        num_frames = None
        if len(fields) == 3 and fields[1].isdigit() and fields[2].lstrip("-").isdigit():
            path, num_frames, label = fields[0], int(fields[1]), fields[2]
        elif sep == ",":
            path, label = ",".join(fields[:-1]), fields[-1]
        else:  # the path keeps its own spaces (runs of spaces included)
            path, label = line.rsplit(None, 1)
        records.append(VideoRecord(_join(data_root, path), _parse_label(label, where),
                                   num_frames=num_frames))
    return VideoList(tuple(records))


def records_from_pairs(pairs: Iterable, data_root=None) -> VideoList:
    """Makes a `VideoList` from `(path, label)` pairs (or `VideoRecord`s).

    Args:
        pairs: iterable of `(path, label)` tuples or `VideoRecord`s.
        data_root: folder that relative paths are joined to, or None.

    Returns:
        `VideoList`.
    """
    records = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, VideoRecord):
            records.append(dataclasses.replace(pair, path=_join(data_root, pair.path)))
            continue
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"list_file[{index}] must be a (path, label) pair, got {pair!r}.")
        path, label = pair
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
            raise ValueError(f"list_file[{index}]: label must be an int, got {label!r}.")
        if not -1 <= label < LABEL_LIMIT:
            raise ValueError(f"list_file[{index}]: label must be in [-1, {LABEL_LIMIT}) (-1: "
                             f"unlabelled), got {label}.")
        records.append(VideoRecord(_join(data_root, os.fspath(path)), int(label)))
    return VideoList(tuple(records))


def read_kinetics_csv(
    csv_file,
    data_root=None,
    classes: Sequence[str] | None = None,
    path_template: str = KINETICS_PATH_TEMPLATE,
) -> VideoList:
    """Reads a Kinetics annotation CSV (`label,youtube_id,time_start,time_end,split`).

    Each row becomes the clip file name of the usual download scripts,
    `{youtube_id}_{time_start:06d}_{time_end:06d}.mp4`, joined to `data_root`.
    `path_template` changes the layout; it may use the fields `label`,
    `label_dir` (the label with spaces replaced by `_`), `youtube_id`,
    `time_start`, `time_end` and `split`, e.g.
    `"{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"`.

    Args:
        csv_file: str or path-like. The CSV file, with a header row.
        data_root: folder of the clips, or None.
        classes: sequence of str or None. Class names in label order. Default:
            the sorted labels of this file (pass the training classes when
            reading a validation file, so that both agree).
        path_template: str. Relative path of a clip, see above.

    Returns:
        `VideoList` with `classes`. Rows without a label (the test split) get
        label -1.

    Raises:
        FileNotFoundError: the CSV file does not exist.
        ValueError: a column is missing or a label is not in `classes`.

    Example:

    >>> train = read_kinetics_csv("kinetics400/train.csv", "kinetics400/train")  # doctest: +SKIP
    >>> mini = select_classes(train, kinetics_class_subset(train.classes, 100, seed=0))  # doctest: +SKIP
    """
    csv_file = os.fspath(csv_file)
    if not os.path.isfile(csv_file):
        raise FileNotFoundError(f"read_kinetics_csv: CSV file {csv_file!r} does not exist.")
    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows, header = list(reader), reader.fieldnames or ()
    except UnicodeDecodeError as error:
        raise ValueError(f"read_kinetics_csv: {csv_file!r} is not UTF-8 text (byte "
                         f"{error.start}); save it as UTF-8.") from None
    missing = [column for column in KINETICS_COLUMNS[1:] if column not in header]
    if missing:
        raise ValueError(
            f"read_kinetics_csv: {csv_file!r} lacks the column(s) {missing}; "
            f"expected {KINETICS_COLUMNS + ('split',)}."
        )
    if not rows:  # a header only: no videos
        return VideoList((), tuple(classes) if classes is not None else ())
    labelled = "label" in header and all(row.get("label") for row in rows)
    if classes is None:
        classes = sorted({row["label"] for row in rows}) if labelled else []
    classes = tuple(classes)
    index_of = {name: index for index, name in enumerate(classes)} if labelled else None
    records = tuple(_kinetics_record(row, f"{csv_file}, line {number}", index_of, data_root,
                                     path_template)
                    for number, row in enumerate(rows, start=2))
    return VideoList(records, classes)


def _kinetics_record(row, where, index_of, data_root, path_template) -> VideoRecord:
    """The `VideoRecord` of one Kinetics CSV row (`index_of` None: unlabelled, label -1)."""
    name = row.get("label") or ""
    if index_of is not None and name not in index_of:
        raise ValueError(f"{where}: label {name!r} is not in `classes`.")
    fields = {
        "label": name,
        "label_dir": name.replace(" ", "_"),
        "youtube_id": row["youtube_id"],
        "time_start": _parse_int(row["time_start"], "time_start", where),
        "time_end": _parse_int(row["time_end"], "time_end", where),
        "split": row.get("split", ""),
    }
    path = _join(data_root, path_template.format(**fields))
    video_id = f"{fields['youtube_id']}_{fields['time_start']:06d}_{fields['time_end']:06d}"
    return VideoRecord(path, index_of[name] if index_of is not None else -1, video_id)


def kinetics_class_subset(classes: Sequence[str], num_classes: int = 100, seed: int = 0) -> tuple[str, ...]:
    """Draws a class subset, e.g. the paper's MiniKinetics-100.

    The paper draws 100 of the 400 Kinetics classes at random; the exact list was
    not published, so the subset is defined by `seed` (the same seed gives the
    same classes on every machine).

    Args:
        classes: sequence of str. All class names.
        num_classes: int. How many to keep (default 100).
        seed: int. Seed of the draw.

    Returns:
        Sorted tuple of `num_classes` class names.
    """
    classes = sorted(set(classes))
    if not 0 < num_classes <= len(classes):
        raise ValueError(
            f"kinetics_class_subset: `num_classes` must be in [1, {len(classes)}], got {num_classes}."
        )
    chosen = np.random.default_rng(seed).choice(len(classes), size=num_classes, replace=False)
    return tuple(sorted(classes[index] for index in chosen))


def select_classes(videos: VideoList, classes: Sequence[str]) -> VideoList:
    """Keeps the videos of `classes` and relabels them 0..len(classes)-1.

    Args:
        videos: `VideoList` with class names.
        classes: the class names to keep, in their new label order.

    Returns:
        `VideoList` with `classes` as its class names.
    """
    if videos.classes is None:
        raise ValueError("select_classes: `videos` has no class names.")
    unknown = [name for name in classes if name not in videos.classes]
    if unknown:
        raise ValueError(f"select_classes: unknown class name(s) {unknown[:5]}.")
    new_label = {videos.classes.index(name): index for index, name in enumerate(classes)}
    records = tuple(
        dataclasses.replace(record, label=new_label[record.label])
        for record in videos
        if record.label in new_label
    )
    return VideoList(records, tuple(classes))


def ssv2_template_key(template: str) -> str:
    """The label-file key of an SSv2 template: brackets removed as the official code does."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_json(split_file, labels_file, data_root=None, extension: str = ".webm") -> VideoList:
    """Reads Something-Something-V2 annotations.

    Args:
        split_file: the split JSON, a list of `{"id", "template", "label",
            "placeholders"}` (the test split has only `"id"`).
        labels_file: the labels JSON, `{template name: "index"}`. Templates in the
            split file contain `[something]`; brackets are removed before the
            look-up, as in the official code.
        data_root: folder of the `{id}.webm` videos, or None.
        extension: str. Video file extension.

    Returns:
        `VideoList` with the 174 class names in label order; unlabelled videos
        get label -1.

    Raises:
        FileNotFoundError: a JSON file does not exist.
        ValueError: an entry lacks `"id"` or its template is not in the labels.
    """
    for name, path in (("split_file", split_file), ("labels_file", labels_file)):
        if path is None or not os.path.isfile(os.fspath(path)):
            raise FileNotFoundError(f"read_ssv2_json: `{name}` {path!r} does not exist.")
    with open(labels_file, encoding="utf-8") as handle:
        labels = {key: _parse_int(str(value), "label index", os.fspath(labels_file)) for key, value in json.load(handle).items()}
    with open(split_file, encoding="utf-8") as handle:
        entries = json.load(handle)
    if not isinstance(entries, list):
        raise ValueError(f"read_ssv2_json: {os.fspath(split_file)!r} must hold a JSON list.")
    classes = [""] * (max(labels.values()) + 1 if labels else 0)
    for name, index in labels.items():
        classes[index] = name
    records = []
    for position, entry in enumerate(entries):
        where = f"{os.fspath(split_file)}[{position}]"
        if "id" not in entry:
            raise ValueError(f"{where}: entry has no 'id'.")
        label = -1
        if "template" in entry:
            key = ssv2_template_key(entry["template"])
            if key not in labels:
                raise ValueError(f"{where}: template {entry['template']!r} is not in the labels file.")
            label = labels[key]
        video_id = str(entry["id"])
        records.append(VideoRecord(_join(data_root, video_id + extension), label, video_id))
    return VideoList(tuple(records), tuple(classes))

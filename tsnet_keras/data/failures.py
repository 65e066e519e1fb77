"""Counting unreadable videos, and stopping when most of a dataset is unreadable.

Every real video dataset has broken files (Kinetics copies differ by thousands
of missing or corrupt clips). `video_dataset` skips them; a `DecodeFailures`
object records every attempt so that a run can report how many videos were
actually readable, and raises `TooManyFailuresError` when more than
`max_failure_fraction` of the first `check_after` attempts failed (a wrong
`data_root` or list file should stop a run at once, not train on nothing).
"""

from __future__ import annotations

import collections
import logging
import threading

logger = logging.getLogger("tsnet_keras.data")


class TooManyFailuresError(RuntimeError):
    """Most of the files tried so far could not be read."""


class DecodeFailures:
    """Thread-safe record of the videos that could not be read.

    Args:
        max_failure_fraction: float in [0, 1]. Raise when more than this fraction
            of the first `check_after` attempts failed (default 0.5). 1.0 never
            raises.
        check_after: int. Number of attempts after which the fraction is
            checked (default 20; fewer when the dataset is smaller).

    Example:

    >>> failures = DecodeFailures()
    >>> failures.record("a.mp4", None)
    >>> failures.record("b.mp4", "b.mp4 is empty (0 bytes).")
    >>> failures.num_attempts, failures.num_failed, failures.failed_files
    (2, 1, ['b.mp4'])
    """

    def __init__(self, max_failure_fraction: float = 0.5, check_after: int = 20):
        if not 0.0 <= max_failure_fraction <= 1.0:
            raise ValueError(
                f"DecodeFailures: `max_failure_fraction` must be in [0, 1], got {max_failure_fraction}."
            )
        if check_after < 1:
            raise ValueError(f"DecodeFailures: `check_after` must be >= 1, got {check_after}.")
        self.max_failure_fraction = max_failure_fraction
        self.check_after = check_after
        self._lock = threading.Lock()
        self._errors = collections.OrderedDict()  # path -> last error message
        self._counts = collections.Counter()  # path -> failed attempts
        self.num_attempts = 0
        self.num_failed = 0
        self._checked = False

    def is_known_bad(self, path: str) -> bool:
        """Whether `path` already failed once (it is not opened again)."""
        with self._lock:
            return path in self._errors

    def record(self, path: str, error: str | None, num_records: int | None = None) -> None:
        """Records one attempt; `error` is None on success.

        Raises:
            TooManyFailuresError: this attempt completes the first
                `min(check_after, num_records)` attempts and more than
                `max_failure_fraction` of them failed.
        """
        with self._lock:
            self.num_attempts += 1
            if error is not None:
                self.num_failed += 1
                first = path not in self._errors
                self._errors[path] = error
                self._counts[path] += 1
                if first:
                    logger.warning("Skipping unreadable video: %s", error)
            threshold = self.check_after if num_records is None else min(self.check_after, num_records)
            if self._checked or self.num_attempts < threshold:
                return
            self._checked = True
            if self.num_failed > self.max_failure_fraction * self.num_attempts:
                raise TooManyFailuresError(self._too_many_message())

    def _too_many_message(self) -> str:
        names = list(self._errors)[:5]
        return (
            f"{self.num_failed} of the first {self.num_attempts} videos could not be read "
            f"(more than max_failure_fraction={self.max_failure_fraction}); check `data_root` and "
            f"the list file. First failures: " + "; ".join(f"{name}: {self._errors[name]}" for name in names)
        )

    @property
    def failed_files(self) -> list[str]:
        """Paths that failed at least once, in the order they first failed."""
        with self._lock:
            return list(self._errors)

    @property
    def errors(self) -> dict[str, str]:
        """`{path: last error message}` of the failed files."""
        with self._lock:
            return dict(self._errors)

    @property
    def num_failed_files(self) -> int:
        with self._lock:
            return len(self._errors)

    def summary(self) -> str:
        """One line: attempts, failures, and the first failed files."""
        with self._lock:
            names = list(self._errors)[:3]
            more = len(self._errors) - len(names)
            tail = f" (e.g. {', '.join(names)}{f' and {more} more' if more > 0 else ''})" if names else ""
            return (
                f"{self.num_failed} of {self.num_attempts} decode attempts failed, "
                f"{len(self._errors)} distinct file(s){tail}."
            )

    def __repr__(self):
        return f"DecodeFailures({self.summary()})"

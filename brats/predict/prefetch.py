"""The case loop of prediction: the next case is read while the current one is predicted (I/O overlapped with
compute), progress shown, and Ctrl-C reported with what was written."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from brats.progress import track

__all__ = ["prefetch", "predict_cases"]

T = TypeVar("T")
R = TypeVar("R")


def prefetch(items: Sequence[T], load: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """Yield ``(item, load(item))`` in order; ``load`` of the next item runs in a thread meanwhile.

    An exception of ``load`` is raised when its item's turn comes (so errors keep the order of the items);
    at most one load runs ahead, so memory holds at most two loaded items.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = [pool.submit(load, item) for item in items[:1]]
        for i, item in enumerate(items):
            loaded = ahead.pop().result()
            ahead += [pool.submit(load, nxt) for nxt in items[i + 1 : i + 2]]
            yield item, loaded


def predict_cases(
    cases: Sequence[T],
    load: Callable[[T], R],
    predict: Callable[[T, R], Path],
    output_dir: Path,
    progress: bool = False,
) -> list[Path]:
    """``predict(case, load(case))`` for every case, loading the next one meanwhile; the paths it returns.

    Raises:
        KeyboardInterrupt: on Ctrl-C, with a message saying how many cases were written to ``output_dir``
            (every file is written atomically, so none is left half-written).
    """
    paths: list[Path] = []
    try:
        for case, loaded in track(prefetch(cases, load), "predict", "case", len(cases), enabled=progress):
            paths.append(predict(case, loaded))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted: {len(paths)} of {len(cases)} case(s) written to {output_dir}, no partial file left"
        ) from None
    return paths

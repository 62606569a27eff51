"""Progress of long loops: a tqdm bar on a terminal, periodic plain log lines otherwise.

A log file or a CI console gets no carriage-return updates: when stderr is not a terminal, :func:`track` logs
``desc: 3/10 case (30%), 12.5 s elapsed`` at most every ``every`` seconds (and once at the end) through the
``brats.progress`` logger. Library functions stay quiet unless the caller passes ``enabled=True``.

Example:
    >>> for case in track(cases, desc="predict", unit="case", enabled=progress):  # doctest: +SKIP
    ...     ...
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["track", "Progress", "LOG_EVERY_S"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two plain progress lines when stderr is not a terminal.
LOG_EVERY_S = 30.0


def _is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class Progress:
    """A manual progress counter (``update(n)``, ``set_postfix(**kw)``, ``close()``), bar or log lines.

    Args:
        total: expected number of items (None: unknown).
        desc: what is counted, first word of each line.
        unit: the item's name.
        enabled: False: silent.
        every: seconds between plain log lines (non-terminal stderr).
        terminal: force a bar (True) or log lines (False); default: whether stderr is a terminal.
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        enabled: bool = True,
        every: float = LOG_EVERY_S,
        terminal: bool | None = None,
    ):
        self.total, self.desc, self.unit, self.every = total, desc, unit, float(every)
        self.n = 0
        self.enabled = bool(enabled)
        self._postfix = ""
        self._bar: Any = None
        self._t0 = self._last = time.monotonic()
        if self.enabled and (_is_terminal() if terminal is None else terminal):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every:
            self._last = now
            self._log(now)

    def set_postfix(self, **values: Any) -> None:
        """Extra figures shown after the count (e.g. the running loss)."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def _log(self, now: float) -> None:
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self._postfix}" if self._postfix else ""
        log.info("%s: %s %s%s, %.1f s elapsed%s", self.desc, done, self.unit, pct, now - self._t0, extra)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.n and time.monotonic() - self._t0 >= self.every:
            self._log(time.monotonic())  # the last count of long work; short work stays quiet
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    iterable: Iterable[T],
    desc: str = "",
    unit: str = "it",
    total: int | None = None,
    enabled: bool = True,
    every: float = LOG_EVERY_S,
    terminal: bool | None = None,
) -> Iterator[T]:
    """Iterate ``iterable`` showing progress (see :class:`Progress`); ``total`` defaults to ``len(iterable)``."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, unit, enabled, every, terminal) as bar:
        for item in iterable:
            yield item
            bar.update(1)

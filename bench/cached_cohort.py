"""Synthetic cohorts that bench scripts generate once and reuse, each marked with the profile that made it.

``bench/generalise.py`` (selection cohorts) and ``bench/stress_factors.py`` (one cohort per stress factor) keep
their cases under ``runs/`` and score every later model on the same files. A cohort is complete when its ``done``
file exists; that file holds the synth profile's settings as JSON (and its name, which is not compared), so
that a cohort made before a profile's ranges changed is refused in one line instead of silently scored as if it
were the new one. A ``done`` file from before this record (the text ``ok``) is taken to match and rewritten with
the current profile. A change of the generator's code with the same settings is not detected: delete the
cohorts after one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from brats.errors import BratsError
from brats.synth import SynthProfile, generate_cohort, get_profile

__all__ = ["cached_cohort", "profile_record"]


def profile_record(profile: str | SynthProfile) -> dict:
    """The settings of ``profile`` as a JSON-ready dict (ranges as lists)."""
    prof = get_profile(profile)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(prof).items()}


def cached_cohort(
    root: Path,
    n: int,
    seed: int,
    profile: str | SynthProfile,
    workers: int = 1,
    shape: tuple[int, int, int] | None = None,
) -> Path:
    """``root`` holding ``n`` cases of ``profile`` with ``seed``: generated unless a complete cohort is there.

    Raises:
        BratsError: ``root`` holds a complete cohort made with other settings (the message names the first).
    """
    done = Path(root) / "done"
    want = profile_record(profile)
    if done.is_file():
        text = done.read_text().strip()
        have = want if text == "ok" else json.loads(text)
        # the name is not compared: it says which settings were given, the cases depend on their values only
        changed = sorted(k for k in set(want) | set(have) if k != "name" and want.get(k) != have.get(k))
        if changed:
            key = changed[0]
            raise BratsError(
                f"{root} was generated with {key}={have.get(key)}, not {want.get(key)} (the profile changed since): "
                "delete the folder to generate it again"
            )
        if text == "ok":
            done.write_text(json.dumps(want, sort_keys=True) + "\n")
        return Path(root)
    generate_cohort(root, n, seed, "2021", workers, shape, profile=profile)
    done.write_text(json.dumps(want, sort_keys=True) + "\n")
    return Path(root)

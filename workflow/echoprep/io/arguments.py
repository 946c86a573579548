"""Command-line argument helpers shared by the stage sub-commands of ``echoprep``."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path


def key_paths(
    items: Sequence[str] | None,
    option: str = "--out",
    *,
    form: str = "KEY=PATH",
    keys: Collection[str] | None = None,
) -> dict[str, Path]:
    """Parse ``KEY=PATH`` words (``--out bold=x.nii.gz mask=y.nii.gz``) into a dict.

    Parameters
    ----------
    items
        The words given to ``option`` (None: none).
    option, form
        The option's name and the form it expects, for the error message.
    keys
        The keys allowed (None: any non-empty key).

    Raises
    ------
    SystemExit
        On a word without ``=``, with an empty key or path, or with a key not in ``keys``.
    """
    out: dict[str, Path] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value or (keys is not None and key not in keys):
            raise SystemExit(f"{option} expects {form}, got {item!r}")
        out[key] = Path(value)
    return out


#: Keys of one ``--entry`` of ``echoprep comparison subject`` (one variant of one session), in
#: the order the workflow writes them.
ENTRY_KEYS = (
    "subject",
    "session",
    "variant",
    "nc",
    "roi",
    "brain",
    "mask",
    "betas",
    "trials",
    "reference",
    "reference_trials",
)


def entry_words(entry: Mapping[str, object]) -> str:
    """The ``--entry`` words of one entry: ``key=value`` for the :data:`ENTRY_KEYS` given."""
    return " ".join(f"{k}={entry[k]}" for k in ENTRY_KEYS if entry.get(k) is not None)

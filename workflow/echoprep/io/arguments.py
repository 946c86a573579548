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


def echo_key_paths(
    items: Sequence[str] | None,
    n_echoes: int,
    *,
    keys: Sequence[str],
    required: Collection[str] = (),
    per: str = "echo",
    option: str = "--out",
) -> list[dict[str, Path]]:
    """Parse the ``KEY=PATH`` words of a job that treats several echoes: the i-th word with a
    key is echo i's (``--out bold=e1.nii.gz gfactor=g1.nii.gz bold=e2.nii.gz gfactor=g2.nii.gz``
    gives ``[{"bold": e1, "gfactor": g1}, {"bold": e2, "gfactor": g2}]``).

    Parameters
    ----------
    items
        The words given to ``option`` (None: none).
    n_echoes
        The number of echoes (of the option naming the inputs, ``per``).
    keys
        The keys allowed.
    required
        Keys that must be given.
    per, option
        The input option the words go with (``"--mag"``) and this option's name, for the
        error messages.

    Returns
    -------
    list of dict
        Per echo, ``key -> path`` for every key given.

    Raises
    ------
    SystemExit
        On a word :func:`key_paths` refuses, a required key missing, or a key not given once
        per echo.
    """
    form = "|".join(keys) + "=PATH"
    by_key: dict[str, list[Path]] = {k: [] for k in required}
    for item in items or []:
        ((key, path),) = key_paths([item], option, form=form, keys=keys).items()
        by_key.setdefault(key, []).append(path)
    for key, paths in by_key.items():
        if len(paths) != n_echoes:
            raise SystemExit(
                f"{option} expects one {key}=PATH per {per} ({n_echoes}); got {len(paths)}"
            )
    return [{k: paths[i] for k, paths in by_key.items()} for i in range(n_echoes)]


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
    "heldout",
    "heldout_volumes",
    "planted_design",
    "planted",
    "planted_typeb",
)


def entry_words(entry: Mapping[str, object]) -> list[str]:
    """The ``--entry`` words of one entry: ``key=value`` for the :data:`ENTRY_KEYS` given
    (unquoted: the caller quotes each for a shell)."""
    return [f"{k}={entry[k]}" for k in ENTRY_KEYS if entry.get(k) is not None]

"""What makes a derivative folder a BIDS-derivative dataset: ``dataset_description.json``,
``.bidsignore`` and ``README.md``, written from the output registry's folder table
(:data:`echoprep.io.outputs.FOLDERS`) by the ``describe`` command (rule ``dataset_description``).

The README says what the folder holds (one line per output kind, from the registry), which
configuration produced it and where the methods are documented; the ``.bidsignore`` lists the
file names the BIDS specification does not define yet, so that the official validator
(``bids-validator-deno``) reports no errors on the folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from echoprep import CODE_URL, __version__
from echoprep.io.atomic import write_text
from echoprep.io.bids_uri import BIDS_SCHEME, RAW, dataset_links, relative_location
from echoprep.io.outputs import FOLDERS, OUTPUTS, Folder, Output, folder_kind
from echoprep.io.sidecars import BIDS_VERSION, write_dataset_description

_BIDSIGNORE_HEADER = (
    "# Written by echoprep: file names the BIDS specification {version} does not define yet\n"
    "# (see README.md). The official validator skips them.\n"
)

#: Placeholder stems of the keys, per level (``ses-`` only when the dataset has sessions).
_STEMS = {
    "run": (
        "sub-{subject}/ses-{session}/func",
        "sub-{subject}_ses-{session}_task-{task}_run-{run}",
    ),
    "session": ("sub-{subject}/ses-{session}/func", "sub-{subject}_ses-{session}_task-{task}"),
}


def folder_outputs(folder: Folder) -> list[Output]:
    """The registered outputs written into folders of this kind, in registry order."""
    return [o for o in OUTPUTS.values() if o.folder == folder.template]


def output_pattern(output: Output) -> str:
    """A readable path pattern of an output inside its folder, with ``{placeholders}``
    (``sub-{subject}/ses-{session}/func/sub-{subject}_ses-{session}_task-{task}_..._bold.nii.gz``).
    """
    space = "{space}" if output.spatial else None
    if output.level in _STEMS:
        sub_folder, stem = _STEMS[output.level]
    elif output.level == "subject":
        sub_folder, stem = output.subject_key("{subject}", "{task}")
    else:
        sub_folder, stem = "", "task-{task}"
    name = output.file_name(stem, space=space)
    return f"{sub_folder}/{name}" if sub_folder else name


def readme_text(folder_name: str, folder: Folder, source: str) -> str:
    """The ``README.md`` of a derivative folder.

    Parameters
    ----------
    folder_name
        The folder's actual name (``glmsingle-nordic-optcom``).
    folder
        Its :data:`FOLDERS` entry.
    source
        The raw BIDS dataset it was computed from, as the folder names it (relative to it).

    Returns
    -------
    str
        Markdown: title, description, provenance, one line per output kind (path pattern and
        what it holds, with units), the ignored names, the documentation.
    """
    lines = [
        f"# {folder.name_of(folder_name)}",
        "",
        f"{folder.description}.",
        "",
        f"Written by echoprep {__version__} ({CODE_URL}) from the BIDS dataset `{source}` "
        f"(its location from this folder, `{RAW}` in `DatasetLinks`). "
        "The whole configuration of the run is recorded in `dataset_description.json` "
        "(key `echoprepConfig`)",
    ]
    sections = folder.sections
    if sections:
        names = ", ".join(f"`{s}:`" for s in sections)
        lines[-1] += f"; the sections that shape these files are {names}."
    else:
        lines[-1] += "."
    outputs = folder_outputs(folder)
    if outputs:
        lines += [
            "",
            "## Files",
            "",
            "`ses-{session}` is left out for datasets without sessions; `space-{space}` is "
            "`space-T1w` with spatial preprocessing to the T1w, absent on the native grid. "
            "A file marked (+ `.json`) has a JSON sidecar of the same name with its `Sources`, "
            "`Parameters` and `SoftwareVersions`; the files they name are BIDS URIs "
            f"(`bids:{RAW}:...` the raw dataset, `bids::...` this folder, `bids:<folder>:...` "
            "another folder of the output), resolved through `DatasetLinks` in "
            "`dataset_description.json`.",
            "",
        ]
        lines += [
            f"- `{output_pattern(o)}`{' (+ `.json`)' if o.sidecar else ''}: {o.description}"
            for o in outputs
        ]
    ignored = [p for p in folder.bidsignore if not p.startswith("#")]
    if ignored:
        lines += [
            "",
            "## BIDS validity",
            "",
            f"The folder is a BIDS {BIDS_VERSION} derivative dataset. The specification has no "
            "name yet for the files matching these patterns, listed in `.bidsignore` so that "
            "the BIDS validator skips them: " + ", ".join(f"`{p}`" for p in ignored) + ".",
        ]
    docs = folder.docs
    lines += [
        "",
        "## Documentation",
        "",
        "In the echoprep repository: "
        + ", ".join(f"[{d}]({CODE_URL}/blob/main/{d})" for d in docs)
        + f"; every output folder in [docs/outputs.md]({CODE_URL}/blob/main/docs/outputs.md).",
        "",
    ]
    return "\n".join(lines)


def describe_folder(
    root: str | Path,
    *,
    source: str,
    config: Mapping[str, Any] | None = None,
    folders: Iterable[str] = (),
) -> dict[str, Path]:
    """Write ``dataset_description.json``, ``.bidsignore`` and ``README.md`` of the derivative
    folder ``root``; its kind follows from its name (``combine-raw`` -> ``combine``).

    Parameters
    ----------
    root
        The folder (``<output_dir>/<folder>``).
    source
        The raw BIDS dataset: ``DatasetLinks`` maps ``raw`` to it (relative to ``root``) and
        ``SourceDatasets`` names it by the BIDS URI ``bids:raw:``.
    config
        The workflow configuration (``echoprepConfig``).
    folders
        The other derivative folders of the run (``DatasetLinks``: ``"../<folder>"``), whose
        files the folder's sidecars may name.

    Returns
    -------
    dict
        ``{"description": ..., "bidsignore": ..., "readme": ...}`` paths.

    Raises
    ------
    KeyError
        ``root`` is not named like a folder echoprep writes.
    """
    root = Path(root)
    kind = folder_kind(root.name)
    folder = FOLDERS[kind]
    description = write_dataset_description(
        root,
        folder.name_of(root.name),
        description=folder.description,
        config=dict(config or {}),
        source_datasets=[f"{BIDS_SCHEME}{RAW}:"],
        links=dataset_links(root, source, folders),
    )
    # always written (also without patterns): a stale one from an older run must not linger
    ignore = _BIDSIGNORE_HEADER.format(version=BIDS_VERSION) + "".join(
        f"{p}\n" for p in folder.bidsignore
    )
    bidsignore = write_text(root / ".bidsignore", ignore)
    readme = write_text(
        root / "README.md", readme_text(root.name, folder, relative_location(source, root))
    )
    return {"description": description, "bidsignore": bidsignore, "readme": readme}


__all__ = ["describe_folder", "folder_outputs", "output_pattern", "readme_text"]

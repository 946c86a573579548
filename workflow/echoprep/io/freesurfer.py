"""FreeSurfer subjects: finding one per participant, reading and writing its files, GIFTI.

A participant's FreeSurfer subject is found without configuration in the usual places
(:func:`freesurfer_roots`): ``<bids_dir>/derivatives/freesurfer/``, fMRIPrep's
``<bids_dir>/sourcedata/freesurfer/`` (and the same below a ``derivatives/fmriprep/``
folder), or the configured ``surface.freesurfer_dir``; in each, ``sub-<label>/`` (or
``<label>/``). What the surface stage needs of it (:data:`NEEDED`): ``mri/orig.mgz`` and
``surf/{lh,rh}.{white,pial,sphere.reg}``; ``surf/{lh,rh}.inflated`` is used for figures when
present, ``label/`` never required. :func:`check_subject` reads only the surfaces' and the
volume's headers (vertex counts, grid), so planning stays cheap.

Surface ROIs (:func:`read_surface_roi`): FreeSurfer ``.label`` (vertex numbers), ``.annot``
(one ROI per named region) and GIFTI masks (``.func.gii``, ``.label.gii``, ``.shape.gii``:
non-zero inside), on the subject's own (fsnative) vertices.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import freesurfer as nfs
from nibabel import gifti

from echoprep.io.atomic import atomic_path

#: BIDS ``hemi`` label -> FreeSurfer prefix.
HEMIS: dict[str, str] = {"L": "lh", "R": "rh"}
#: The surfaces the surface stage reads per hemisphere (``surf/<lh|rh>.<name>``).
SURFACES = ("white", "pial", "sphere.reg")
#: Relative paths of every file the stage needs (``mri/orig.mgz``, ``surf/lh.white``, ...).
NEEDED = ("mri/orig.mgz", *(f"surf/{h}.{s}" for h in HEMIS.values() for s in SURFACES))
#: Extensions of surface ROI files (:func:`read_surface_roi`).
ROI_EXTENSIONS = (".label", ".annot", ".func.gii", ".label.gii", ".shape.gii")
#: Region names of an annotation that are no ROI (FreeSurfer's "unknown" and medial wall).
ANNOT_SKIP = ("unknown", "???", "Unknown", "Medial_wall", "medialwall", "corpuscallosum")

_TRIANGLE_MAGIC = b"\xff\xff\xfe"
#: GIFTI encoding of functional data arrays (uncompressed base64: :func:`write_func`).
FUNC_ENCODING = "B64BIN"


class FreeSurferError(ValueError):
    """A FreeSurfer subject or surface file that cannot be used (message: file, expected,
    found, fix)."""


@dataclass(frozen=True)
class FreeSurferSubject:
    """One participant's FreeSurfer subject folder.

    Attributes
    ----------
    subject
        BIDS label (without ``sub-``).
    path
        The subject folder.
    root
        The subjects folder it was found in.
    vertices
        Vertices per hemisphere (``{"L": n, "R": n}``), from the surfaces' headers.
    inflated
        ``surf/<h>.inflated`` per hemisphere when present.
    """

    subject: str
    path: Path
    root: Path
    vertices: Mapping[str, int] = field(default_factory=dict)
    inflated: Mapping[str, Path] = field(default_factory=dict)

    @property
    def orig(self) -> Path:
        """``mri/orig.mgz``."""
        return self.path / "mri" / "orig.mgz"

    def surface(self, hemi: str, name: str) -> Path:
        """``surf/<lh|rh>.<name>`` (``hemi``: ``L`` or ``R``)."""
        return self.path / "surf" / f"{HEMIS[hemi]}.{name}"


def freesurfer_roots(bids_dir: str | Path, configured: str | Path | None) -> list[Path]:
    """The subjects folders searched for a participant, in order: the configured one alone
    when given, else the usual places below the raw dataset (module docstring)."""
    if configured:
        return [Path(configured)]
    bids = Path(bids_dir)
    return [
        bids / "derivatives" / "freesurfer",
        bids / "sourcedata" / "freesurfer",
        bids / "derivatives" / "fmriprep" / "sourcedata" / "freesurfer",
    ]


def find_subject_folder(subject: str, roots: Sequence[Path]) -> tuple[Path, Path] | None:
    """``(subject folder, root)`` of the first ``<root>/sub-<label>`` or ``<root>/<label>``
    folder, or None."""
    for root in roots:
        for name in (f"sub-{subject}", subject):
            folder = root / name
            if folder.is_dir():
                return folder, root
    return None


def surface_vertex_count(path: str | Path) -> int:
    """Vertices of a FreeSurfer triangle surface, read from its header only.

    Raises
    ------
    FreeSurferError
        Not a FreeSurfer triangle file (the message names it).
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            magic = fh.read(3)
            if magic != _TRIANGLE_MAGIC:
                raise FreeSurferError(
                    f"{p}: expected a FreeSurfer triangle surface (magic ff ff fe); found "
                    f"{magic.hex(' ')}. Fix: pass the surf/ files FreeSurfer wrote (recon-all)."
                )
            fh.readline()  # "created by ..." line
            fh.readline()  # blank line
            header = fh.read(8)
    except OSError as exc:
        raise FreeSurferError(
            f"{p}: cannot read the surface ({exc}). Fix: check the file."
        ) from None
    if len(header) != 8:
        raise FreeSurferError(f"{p}: truncated FreeSurfer surface. Fix: rerun recon-all.")
    return int(np.frombuffer(header[:4], ">i4")[0])


def check_subject(subject: str, folder: Path, root: Path) -> FreeSurferSubject:
    """A participant's FreeSurfer folder checked: every needed file there, white, pial and
    sphere.reg of a hemisphere with one vertex count, ``orig.mgz`` a 3D volume.

    Raises
    ------
    FreeSurferError
        One message listing every problem (file, expected, found, fix).
    """
    problems: list[str] = []
    for rel in NEEDED:
        if not (folder / rel).is_file():
            problems.append(
                f"{folder / rel}: missing (expected {', '.join(NEEDED)}). Fix: rerun or copy the "
                "FreeSurfer subject completely, or remove the folder (no surface outputs then)."
            )
    vertices: dict[str, int] = {}
    if not problems:
        try:
            header = nib.load(folder / "mri" / "orig.mgz").header
            if len(header.get_data_shape()) < 3:
                raise FreeSurferError(
                    f"{folder / 'mri' / 'orig.mgz'}: expected a 3D volume; found shape "
                    f"{header.get_data_shape()}"
                )
        except FreeSurferError as exc:
            problems.append(str(exc))
        except Exception as exc:  # nibabel raises several types for a broken file
            problems.append(
                f"{folder / 'mri' / 'orig.mgz'}: cannot read the volume ({exc}). Fix: rerun "
                "recon-all or replace the file."
            )
        for hemi, prefix in HEMIS.items():
            counts = {}
            for name in SURFACES:
                try:
                    counts[name] = surface_vertex_count(folder / "surf" / f"{prefix}.{name}")
                except FreeSurferError as exc:
                    problems.append(str(exc))
            if len(set(counts.values())) > 1:
                found = ", ".join(f"{prefix}.{k} {v}" for k, v in counts.items())
                problems.append(
                    f"{folder / 'surf'}: expected {prefix}.white, {prefix}.pial and "
                    f"{prefix}.sphere.reg with one vertex count; found {found}. Fix: rerun "
                    "recon-all (the surfaces come from different runs)."
                )
            elif counts:
                vertices[hemi] = next(iter(counts.values()))
    if problems:
        raise FreeSurferError(
            f"sub-{subject}: FreeSurfer subject {folder}:\n  " + "\n  ".join(problems)
        )
    inflated = {
        h: folder / "surf" / f"{p}.inflated"
        for h, p in HEMIS.items()
        if (folder / "surf" / f"{p}.inflated").is_file()
    }
    return FreeSurferSubject(subject, folder, root, vertices, inflated)


def find_fsaverage(name: str, roots: Iterable[Path], freesurfer_home: str | None) -> Path | None:
    """The ``name`` template's folder (``fsaverage``, ``fsaverage5``...) holding
    ``surf/{lh,rh}.sphere.reg``: in the subjects folders, then ``$FREESURFER_HOME/subjects``;
    None when nowhere."""
    places = [*roots, *([Path(freesurfer_home) / "subjects"] if freesurfer_home else [])]
    for root in places:
        folder = root / name
        if all((folder / "surf" / f"{h}.sphere.reg").is_file() for h in HEMIS.values()):
            return folder
    return None


def nilearn_fsaverage5(kind: str, hemi: str) -> Path:
    """A file of nilearn's packaged fsaverage5 (``kind``: ``sphere``, ``infl``, ``white``,
    ``pial``; ``hemi``: ``L``/``R``), available offline."""
    import nilearn

    side = {"L": "left", "R": "right"}[hemi]
    return (
        Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5" / f"{kind}_{side}.gii.gz"
    )


# ---------------------------------------------------------------------------------------------
# reading


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(coords (V, 3) float64 mm, faces (F, 3) int64)`` of a FreeSurfer surface or a GIFTI
    surface (``.gii``, ``.gii.gz``)."""
    p = Path(path)
    try:
        if p.name.endswith(".gii") or p.name.endswith(".gii.gz"):
            img = _load_gifti(p)
            coords = img.agg_data("NIFTI_INTENT_POINTSET")
            faces = img.agg_data("NIFTI_INTENT_TRIANGLE")
        else:
            coords, faces = nfs.read_geometry(str(p))
    except Exception as exc:
        raise FreeSurferError(
            f"{p}: cannot read the surface ({exc}). Fix: check the file."
        ) from None
    return np.asarray(coords, np.float64), np.asarray(faces, np.int64)


def _load_gifti(path: Path) -> gifti.GiftiImage:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            return gifti.GiftiImage.from_bytes(fh.read())
    return nib.load(path)


def tkr_to_scanner(orig: str | Path) -> np.ndarray:
    """``(4, 4)`` map from FreeSurfer's surface coordinates (tkr-RAS of ``orig.mgz``) to its
    scanner RAS: ``vox2ras @ inv(vox2ras_tkr)``."""
    header = nib.load(orig).header
    return np.asarray(header.get_vox2ras(), float) @ np.linalg.inv(
        np.asarray(header.get_vox2ras_tkr(), float)
    )


def read_gifti_data(path: str | Path) -> np.ndarray:
    """The data of a functional GIFTI file: ``(V,)`` for one array, ``(V, K)`` for K."""
    img = _load_gifti(Path(path))
    if not img.darrays:
        raise FreeSurferError(f"{path}: expected a GIFTI file with data arrays; found none")
    arrays = [np.asarray(d.data) for d in img.darrays]
    return arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=1)


# ---------------------------------------------------------------------------------------------
# writing


def write_surface(
    coords: np.ndarray, faces: np.ndarray, out: str | Path, *, anatomical: str = "Cortical"
) -> Path:
    """Write a GIFTI surface (``.surf.gii``) atomically.

    Parameters
    ----------
    coords
        ``(V, 3)`` vertex coordinates (mm, world RAS of the space the file is in).
    faces
        ``(F, 3)`` vertex indices.
    anatomical
        ``AnatomicalStructureSecondary`` (white: ``GrayWhite``, pial: ``Pial``, ...).
    """
    points = gifti.GiftiDataArray(
        np.asarray(coords, np.float32),
        intent="NIFTI_INTENT_POINTSET",
        datatype="NIFTI_TYPE_FLOAT32",
        meta={"AnatomicalStructureSecondary": anatomical},
    )
    tris = gifti.GiftiDataArray(
        np.asarray(faces, np.int32), intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32"
    )
    return _save(gifti.GiftiImage(darrays=[points, tris]), out)


def write_func(values: np.ndarray, out: str | Path, *, hemi: str) -> Path:
    """Write vertex data as a functional GIFTI (``.func.gii``) atomically.

    The data arrays are written one after another, so memory holds one column's encoding at a
    time, not the whole file's; as ``Base64Binary`` (:data:`FUNC_ENCODING`): gzip shrinks
    noise-like betas by 7 % only and costs ten times the CPU (docs/surface.md, "Cost").

    Parameters
    ----------
    values
        ``(V,)`` one map, or ``(V, K)`` K maps (one data array each: trials, volumes).
    hemi
        ``L`` or ``R`` (``AnatomicalStructurePrimary``).
    """
    data = np.asarray(values, np.float32)
    columns = data[:, None] if data.ndim == 1 else data
    structure = {"L": "CortexLeft", "R": "CortexRight"}[hemi]
    meta = gifti.GiftiMetaData({"AnatomicalStructurePrimary": structure})
    text = gifti.GiftiImage(meta=meta).to_xml()
    head, tail = text.rsplit(b"</GIFTI>", 1)
    head = head.replace(
        b'NumberOfDataArrays="0"', f'NumberOfDataArrays="{columns.shape[1]}"'.encode()
    )
    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        fh.write(head)
        for k in range(columns.shape[1]):
            array = gifti.GiftiDataArray(
                np.ascontiguousarray(columns[:, k]),
                intent="NIFTI_INTENT_NONE",
                datatype="NIFTI_TYPE_FLOAT32",
                encoding=FUNC_ENCODING,
            )
            fh.write(array.to_xml())
        fh.write(b"</GIFTI>" + tail)
    return out


def write_label(vertices: np.ndarray, coords: np.ndarray, out: str | Path) -> Path:
    """Write a FreeSurfer ``.label`` (ASCII: vertex number, x, y, z, value 0) atomically.

    Parameters
    ----------
    vertices
        ``(N,)`` vertex numbers.
    coords
        ``(N, 3)`` their coordinates (mm; FreeSurfer writes white-surface tkr-RAS).
    """
    vertices = np.asarray(vertices, np.int64)
    coords = np.asarray(coords, float).reshape(len(vertices), 3)
    lines = [f"#!ascii label from echoprep\n{len(vertices)}\n"]
    rows = zip(vertices, coords, strict=True)
    lines += [f"{v} {x:.3f} {y:.3f} {z:.3f} 0.0000000000\n" for v, (x, y, z) in rows]
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text("".join(lines))
    return out


def _save(img: gifti.GiftiImage, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(img.to_bytes())
    return out


# ---------------------------------------------------------------------------------------------
# surface ROIs

_ENTITY = re.compile(r"([A-Za-z]+)-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class SurfaceRoi:
    """A surface ROI file's name read (:func:`surface_roi_name`): ``hemi`` (``L``/``R``),
    ``label`` (None for an annotation: one ROI per region) and ``space`` (``fsnative`` unless
    the name says otherwise)."""

    hemi: str
    label: str | None
    space: str


def alphanumeric(text: str) -> str:
    """``text`` without the characters a BIDS label cannot hold (``V1_exvivo.thresh`` ->
    ``V1exvivothresh``)."""
    return re.sub(r"[^A-Za-z0-9]", "", text)


def surface_roi_name(path: str | Path) -> SurfaceRoi:
    """Hemisphere, label and space of a surface ROI file from its name.

    BIDS-like names (``sub-01_hemi-L_space-fsnative_label-V1_mask.func.gii``,
    ``hemi-R_label-FFA.label``) or FreeSurfer's (``lh.V1_exvivo.thresh.label``,
    ``rh.aparc.annot``: the label is the rest of the name, alphanumeric).

    Raises
    ------
    FreeSurferError
        No hemisphere in the name, or no label (message: file, expected, found, fix).
    """
    p = Path(path)
    name = p.name
    ext = next((e for e in ROI_EXTENSIONS if name.endswith(e)), None)
    if ext is None:
        raise FreeSurferError(f"{p}: expected one of {', '.join(ROI_EXTENSIONS)}")
    stem = name[: -len(ext)]
    ents = {m.group(1): m.group(2) for m in map(_ENTITY.fullmatch, stem.split("_")) if m}
    if stem[:3] in ("lh.", "rh."):
        hemi = "L" if stem.startswith("lh.") else "R"
        rest = stem[3:]
        label = ents.get("label") or alphanumeric(rest)
    elif ents.get("hemi") in HEMIS:
        hemi = ents["hemi"]
        label = ents.get("label")
    else:
        raise FreeSurferError(
            f"{p}: expected the hemisphere in the name (hemi-L/hemi-R, or FreeSurfer's lh./rh. "
            "prefix); found neither. Fix: rename the file, e.g. "
            "sub-01_hemi-L_space-fsnative_label-V1_mask.func.gii or lh.V1.label."
        )
    if ext == ".annot":
        return SurfaceRoi(hemi, None, ents.get("space", "fsnative"))
    if not label:
        raise FreeSurferError(
            f"{p}: expected a label-<ROI> entity (or FreeSurfer's lh.<name>.label); found none. "
            "Fix: rename the file, e.g. sub-01_hemi-L_space-fsnative_label-V1_mask.func.gii."
        )
    return SurfaceRoi(hemi, label, ents.get("space", "fsnative"))


def read_surface_roi(path: str | Path, n_vertices: int) -> dict[str, np.ndarray]:
    """The ROI(s) of a surface ROI file on a hemisphere of ``n_vertices`` vertices.

    Returns
    -------
    dict
        label -> ``(n_vertices,)`` bool; one entry for a ``.label`` or GIFTI mask (its name's
        label), one per named region (alphanumeric) for an ``.annot`` (regions of no vertex and
        :data:`ANNOT_SKIP` left out).

    Raises
    ------
    FreeSurferError
        Unreadable, or on another mesh (vertex numbers beyond ``n_vertices``, another length):
        the message names the file, both counts and the fix.
    """
    p = Path(path)
    roi = surface_roi_name(p)
    wrong_mesh = (
        f"{p}: expected a ROI on the subject's fsnative mesh ({n_vertices} vertices in this "
        "hemisphere); found {found}. Fix: bring the ROI to the subject's own surface (FreeSurfer "
        "mri_label2label from fsaverage), or check that it belongs to this participant."
    )
    try:
        if p.name.endswith(".label"):
            vertices = np.asarray(nfs.read_label(str(p)), np.int64)
            if vertices.size and (vertices.max() >= n_vertices or vertices.min() < 0):
                raise FreeSurferError(wrong_mesh.format(found=f"vertex {int(vertices.max())}"))
            mask = np.zeros(n_vertices, bool)
            mask[vertices] = True
            return {str(roi.label): mask}
        if p.name.endswith(".annot"):
            labels, _, names = nfs.read_annot(str(p))
            if labels.size != n_vertices:
                raise FreeSurferError(wrong_mesh.format(found=f"{labels.size} vertices"))
            out: dict[str, np.ndarray] = {}
            for index, raw in enumerate(names):
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                key = alphanumeric(text)
                if text in ANNOT_SKIP or not key:
                    continue
                mask = labels == index
                if mask.any():
                    out[key] = out.get(key, np.zeros(n_vertices, bool)) | mask
            return out
        data = read_gifti_data(p)
    except FreeSurferError:
        raise
    except Exception as exc:
        raise FreeSurferError(
            f"{p}: cannot read the surface ROI ({exc}). Fix: check the file."
        ) from None
    values = data if data.ndim == 1 else data[:, 0]
    if values.size != n_vertices:
        raise FreeSurferError(wrong_mesh.format(found=f"{values.size} values"))
    return {str(roi.label): np.asarray(values) != 0}


def describe_roi_sources(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """What a sidecar records of surface ROI files: name, hemisphere and label."""
    out = []
    for path in paths:
        roi = surface_roi_name(path)
        out.append({"File": Path(path).name, "Hemisphere": roi.hemi, "Label": roi.label})
    return out


__all__ = [
    "ANNOT_SKIP",
    "HEMIS",
    "NEEDED",
    "ROI_EXTENSIONS",
    "SURFACES",
    "FreeSurferError",
    "FreeSurferSubject",
    "SurfaceRoi",
    "alphanumeric",
    "check_subject",
    "describe_roi_sources",
    "find_fsaverage",
    "find_subject_folder",
    "freesurfer_roots",
    "nilearn_fsaverage5",
    "read_gifti_data",
    "read_mesh",
    "read_surface_roi",
    "surface_roi_name",
    "surface_vertex_count",
    "tkr_to_scanner",
    "write_func",
    "write_label",
    "write_surface",
]

"""The one atomic writer (echoprep.io.atomic): outputs appear under their final name only when
complete, and what a killed job left behind is replaced by the rerun."""

from __future__ import annotations

import gzip
import io
import os

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.atomic import atomic_path, copy_file, write_text
from echoprep.io.images import atomic_save, save_tool_output


def test_the_output_appears_only_when_complete(tmp_path):
    out = tmp_path / "sub" / "x.tsv"
    with atomic_path(out) as tmp:
        tmp.write_text("a\tb\n")
        assert not out.exists() and tmp.parent == out.parent and tmp.name.startswith(".x.tsv")
    assert out.read_text() == "a\tb\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.tsv"]


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "x.json"
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("{")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_the_rerun_of_a_killed_job_replaces_its_leftover(tmp_path):
    out = tmp_path / "bold.nii.gz"
    pid = os.fork()
    if pid == 0:  # a job killed half-way through writing (no cleanup runs)
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"half-written")
            os._exit(9)
    os.waitpid(pid, 0)
    assert not out.exists() and len(list(tmp_path.iterdir())) == 1
    atomic_save(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bold.nii.gz"]
    # the temporary name kept the format extension: nibabel compressed it
    assert gzip.decompress(out.read_bytes())[:4] != b""
    assert np.asarray(nib.load(out).dataobj).sum() == 8


def test_text_and_copies(tmp_path):
    src = write_text(tmp_path / "a.html", "<p>ü</p>")
    copy_file(src, tmp_path / "b" / "a.html")
    assert (tmp_path / "b" / "a.html").read_text(encoding="utf-8") == "<p>ü</p>"


def _gzip_header(path) -> tuple[int, int]:
    """(FLG, MTIME) of a gzip member's header (RFC 1952)."""
    head = path.read_bytes()[:10]
    assert head[:3] == b"\x1f\x8b\x08"
    return head[3], int.from_bytes(head[4:8], "little")


def test_compressed_outputs_are_plain_gzip_without_name_or_time(tmp_path):
    """Any gzip reader (the standard library's here) reads the stages' .nii.gz; the header
    carries no file name and no time, so the same image gives the same bytes."""
    data = np.random.default_rng(0).normal(size=(6, 5, 4, 7)).astype(np.float32)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    a = atomic_save(img, tmp_path / "a_bold.nii.gz")
    b = atomic_save(nib.Nifti1Image(data, img.affine), tmp_path / "b_bold.nii.gz")
    assert _gzip_header(a) == (0, 0)
    assert a.read_bytes() == b.read_bytes()
    plain = atomic_save(nib.Nifti1Image(data, img.affine), tmp_path / "c_bold.nii")
    assert gzip.decompress(a.read_bytes()) == plain.read_bytes()
    back = nib.load(a)
    assert np.array_equal(np.asarray(back.dataobj), data)
    assert back.header.get_xyzt_units() == ("mm", "sec")


def test_a_tool_output_keeps_its_data_bytes(tmp_path):
    """save_tool_output changes the header's units only: the data bytes (int16 with a scale
    factor, as a tool may write them) stay as written, compressed or not."""
    data = np.arange(6 * 5 * 4 * 3, dtype=np.int16).reshape(6, 5, 4, 3)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, 1.0)
    src = tmp_path / "tool.nii.gz"
    nib.save(img, src)
    raw = gzip.decompress(src.read_bytes())
    out = save_tool_output(src, tmp_path / "out" / "x_bold.nii.gz")
    assert not src.exists() and _gzip_header(out) == (0, 0)
    written = gzip.decompress(out.read_bytes())
    offset = int(nib.Nifti1Header.from_fileobj(io.BytesIO(raw))["vox_offset"])
    assert offset >= 348
    assert written[offset:] == raw[offset:]
    back = nib.load(out)
    assert back.header.get_xyzt_units() == ("mm", "sec")
    assert np.array_equal(back.get_fdata(), data * 0.5 + 1.0)

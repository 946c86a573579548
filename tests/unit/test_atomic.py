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


@pytest.mark.parametrize(
    "name, dtype, scaling, big_endian",
    [
        ("f.nii.gz", np.float32, None, False),  # the stages' own outputs: ISA-L path
        ("i.nii.gz", np.int16, None, True),  # unscaled integers, other byte order: ISA-L path
        ("s.nii.gz", np.int16, (0.5, 1.0), False),  # scaled (a scanner's export): nibabel
        ("p.nii", np.float32, None, False),  # uncompressed: nibabel
    ],
)
def test_read_array_is_what_nibabel_reads(tmp_path, name, dtype, scaling, big_endian):
    """read_array gives the array np.asarray(img.dataobj, float32) gives, in the same
    (Fortran) order, whichever path reads it."""
    from echoprep.io.images import load_image, read_array

    data = (np.random.default_rng(1).normal(size=(7, 6, 5, 9)) * 100).astype(dtype)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    if big_endian:
        img.header.set_data_dtype(np.dtype(dtype).newbyteorder(">"))
    if scaling:
        img.header.set_slope_inter(*scaling)
    nib.save(img, tmp_path / name)
    expected = np.asarray(nib.load(tmp_path / name).dataobj, np.float32)
    got = read_array(load_image(tmp_path / name))
    assert got.dtype == np.float32 and got.flags.f_contiguous
    assert np.array_equal(got, expected)
    if scaling:
        assert np.array_equal(got, data * 0.5 + 1.0)
    as64 = read_array(load_image(tmp_path / name), np.float64)
    assert as64.dtype == np.float64 and np.array_equal(as64, expected.astype(np.float64))


def test_read_array_names_a_truncated_file(tmp_path):
    from echoprep.io.images import StageInputError, load_image, read_array

    data = np.random.default_rng(2).normal(size=(8, 8, 8, 20)).astype(np.float32)
    path = atomic_save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "t_bold.nii.gz")
    whole = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(whole[: len(whole) // 2], mtime=0))
    img = load_image(path)  # the header is intact
    with pytest.raises(StageInputError, match=r"t_bold\.nii\.gz: expected 40960 bytes of image"):
        read_array(img)

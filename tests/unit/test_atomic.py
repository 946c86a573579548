"""The one atomic writer (echoprep.io.atomic): outputs appear under their final name only when
complete, and what a killed job left behind is replaced by the rerun."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.atomic import atomic_path, copy_file, write_text
from echoprep.io.images import atomic_save


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

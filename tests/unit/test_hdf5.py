"""HDF5 object times (echoprep.io.hdf5): transforms written by ITK at different times become
byte-identical once their times are neutralised, and stay readable."""

from __future__ import annotations

import time

import numpy as np
import pytest

from echoprep.io.hdf5 import lookup3, neutralise_times


def test_lookup3_matches_the_reference_values():
    # Bob Jenkins' lookup3.c self-test (driver5): hashlittle of "", and of a 30-byte string
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"", 0xDEADBEEF) == 0xBD5B7DDE
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def _transform():
    import ants

    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    tx.set_parameters(np.array([1, 0.01, 0, -0.01, 1, 0, 0, 0, 1, 2.5, -1.0, 0.5]))
    tx.set_fixed_parameters(np.array([1.0, 2.0, 3.0]))
    return tx


def test_transforms_written_at_different_times_become_identical_and_stay_readable(tmp_path):
    import ants

    a, b = tmp_path / "a_xfm.h5", tmp_path / "b_xfm.h5"
    ants.write_transform(_transform(), str(a))
    time.sleep(1.1)  # HDF5 records times in seconds
    ants.write_transform(_transform(), str(b))
    assert a.read_bytes() != b.read_bytes(), "expected ITK's files to differ in their times"
    assert neutralise_times(a) > 0 and neutralise_times(b) > 0
    assert a.read_bytes() == b.read_bytes()
    assert neutralise_times(a) == 0  # already neutral: nothing rewritten
    back = ants.read_transform(str(a))
    np.testing.assert_array_equal(back.parameters, _transform().parameters)
    np.testing.assert_array_equal(back.fixed_parameters, _transform().fixed_parameters)


def test_data_that_looks_like_a_header_is_left_alone(tmp_path):
    p = tmp_path / "x.h5"
    content = b"\x89HDF\r\n\x1a\n" + b"\0" * 40 + b"OHDR\x02\x20" + bytes(range(200))
    p.write_bytes(content)
    assert neutralise_times(p) == 0  # no valid checksum: not an object header
    assert p.read_bytes() == content


def test_a_file_that_is_not_hdf5_is_refused(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("#Insight Transform File V1.0\n")
    with pytest.raises(ValueError, match="expected an HDF5 file"):
        neutralise_times(p)

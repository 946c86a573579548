"""A stage run in-process sets its thread variables for the process (``set_itk_threads``);
conftest's autouse fixture gives them back after the test, so the next test, and every
subprocess it starts, sees the environment the worker had. The two tests run in this order in
one worker (their own xdist group)."""

import os

import pytest

from conftest import THREAD_VARIABLES
from echoprep.adapters.ants import set_itk_threads

pytestmark = pytest.mark.xdist_group("thread_variables")

_BEFORE: dict[str, str | None] = {}


def test_a_stage_sets_its_thread_count_for_the_process():
    _BEFORE.update({name: os.environ.get(name) for name in THREAD_VARIABLES})
    unusual = "7" if os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS") != "7" else "5"
    set_itk_threads(int(unusual))
    os.environ["OMP_NUM_THREADS"] = unusual
    os.environ.pop("MKL_NUM_THREADS", None)
    assert os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == unusual


def test_the_next_test_sees_the_variables_as_they_were():
    if not _BEFORE:
        pytest.skip("runs after test_a_stage_sets_its_thread_count_for_the_process")
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == _BEFORE

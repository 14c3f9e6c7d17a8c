"""pytest fixtures: a work dir, a fakellm, a figment wired to it."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


@pytest.fixture
def workdir():
    d = harness.make_workdir()
    yield d
    harness.remove_workdir(d)


@pytest.fixture
def fakellm(workdir):
    llm = harness.FakeLLM(workdir, {"rules": []})
    yield llm
    llm.stop()


@pytest.fixture
def figment(workdir, fakellm):
    fig = harness.Figment(workdir, llm_url=fakellm.base_url)
    yield fig
    fig.stop()

"""Shared fixtures. The live tests run only inside an environment started by
clients/tests/live.sh, which sets PYWARREN_LIVE to the suite to run (``sync`` or ``async``);
elsewhere they are skipped, and the vectors and fake-kernel tests run alone."""

import os

import pytest

import warren


def live(suite: str):
    return pytest.mark.skipif(
        os.environ.get("PYWARREN_LIVE") != suite,
        reason=f"live {suite} tests run inside an environment (clients/tests/live.sh)",
    )


@pytest.fixture(scope="session")
def k():
    with warren.Client() as client:
        yield client

"""One writer per output directory, checked with two real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ebsdray.io.output_lock import LOCK_NAME, OutputDirBusy, OutputLock
from ebsdray.io.reconstruction_store import ReconstructionStore

HOLD = (
    "import sys, time; from ebsdray.io.output_lock import OutputLock; "
    "lock = OutputLock(sys.argv[1]); print('ready', flush=True); time.sleep(120)"
)


def create(out):
    return ReconstructionStore.create(
        out, identity={"seed": 0}, shape=(2, 8, 8), variant="pl", pl_channels=5,
        max_samples=2, keep_samples=False,
    )  # fmt: skip


@pytest.fixture
def holder(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    yield out, proc
    proc.kill()
    proc.wait()


def test_a_second_job_is_refused_naming_the_holder(holder):
    out, proc = holder
    with pytest.raises(
        OutputDirBusy, match=rf"in use by another running job .*\"pid\": {proc.pid}"
    ):
        create(out)
    assert not (out / "reconstruction.zarr").exists()  # nothing written by the refused job


def test_the_lock_of_a_killed_job_is_taken_over(holder):
    out, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = create(out)  # the dead holder's lock went with its process
    assert f'"pid": {os.getpid()}' in (out / LOCK_NAME).read_text()
    store.release()


def test_the_same_process_is_refused_until_the_first_store_releases(tmp_path):
    out = tmp_path / "run"
    first = create(out)
    with pytest.raises(OutputDirBusy):
        create(out)
    first.release()
    second = create(out)  # resumes the same job
    assert second.output_dir == first.output_dir
    second.release()
    OutputLock(out).release()  # released for good: anyone may take it

"""Failures a long campaign meets, each with a message that names the file and says what to do:
damaged, incompatible or stale HDF5 inputs (`featdyn.h5files`), SIGTERM during training
(`featdyn.train`), and writes that fail (`featdyn.io.atomic_path`)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import dropout_model, tiny_arrays, tiny_spec, train_tiny_run

import featdyn
from featdyn.checkpoints import CheckpointStore
from featdyn.composite import memory_window_frame, read_band
from featdyn.data import corrupted_sets, read_dataset, tensor_data
from featdyn.dynamics import read_drift, read_pca_perturbation, read_trajectories
from featdyn.h5files import PRODUCERS, UnusableInputError, open_h5, producing_rule
from featdyn.io import OutputWriteError, atomic_h5, write_tsv
from featdyn.phase import read_cell
from featdyn.separation import read_separation
from featdyn.sgd_noise import read_isotropy
from featdyn.springblock import read_dynamics
from featdyn.train import (
    EpochStopped,
    StoppedBySignal,
    make_optimizer,
    train_epoch,
)

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent
STORE = "results/runs/m1d-clean/checkpoints.h5"
REBUILD_BY_TRAIN = "It is rebuilt by rule `train` or `import_run`: delete it and run snakemake again."

pytestmark = pytest.mark.usefixtures("one_thread")


def workflow_store(tmp_path: Path, source: Path) -> Path:
    """A copy of a checkpoint store at the path the workflow gives run `m1d-clean`'s store."""
    path = tmp_path / STORE
    path.parent.mkdir(parents=True)
    shutil.copy(source, path)
    return path


def message_of(path: Path, **expected) -> str:
    with pytest.raises(UnusableInputError) as excinfo:
        CheckpointStore(path, **expected)
    return str(excinfo.value)


# --- damaged, incompatible and stale inputs ----------------------------------------------------


def test_truncated_store_names_the_file_the_damage_and_the_rule(tiny_store_path, tmp_path):
    path = workflow_store(tmp_path, tiny_store_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    message = message_of(path)
    assert message == (
        f"`{path}` is truncated: {size // 2} of its {size} bytes are there (a full disk, a killed write "
        f"or a copy that stopped half-way). {REBUILD_BY_TRAIN}"
    )


def test_empty_store_names_the_file(tiny_store_path, tmp_path):
    path = workflow_store(tmp_path, tiny_store_path)
    path.write_bytes(b"")
    assert message_of(path) == f"`{path}` is empty (0 bytes). {REBUILD_BY_TRAIN}"


def test_non_hdf5_store_names_the_file(tiny_store_path, tmp_path):
    path = workflow_store(tmp_path, tiny_store_path)
    path.write_text("<html>502 Bad Gateway</html>\n")
    assert message_of(path) == f"`{path}` is not an HDF5 file (29 bytes without the HDF5 signature). " + (
        REBUILD_BY_TRAIN
    )


def test_missing_store_says_which_rule_builds_it(tmp_path):
    path = tmp_path / STORE
    assert (
        message_of(path)
        == f"`{path}` does not exist. It is built by rule `train` or `import_run`: run snakemake again."
    )


def test_store_of_an_older_layout_names_the_missing_dataset_and_the_version(tiny_store_path, tmp_path):
    path = workflow_store(tmp_path, tiny_store_path)
    with h5py.File(path, "r+") as f:
        del f["optimizer_state"]
        f.attrs["featdyn_version"] = "0.0.1"
    assert message_of(path) == (
        f"`{path}` has no `optimizer_state`: it was written by featdyn 0.0.1 (this is "
        f"{featdyn.__version__}), whose layout differs. {REBUILD_BY_TRAIN}"
    )
    with h5py.File(path, "r+") as f:
        del f.attrs["model"], f.attrs["featdyn_version"]
    assert "has no `optimizer_state`, attribute `model`: it records no featdyn version" in message_of(path)


def test_stale_store_is_reported_instead_of_analysed(tiny_store_path, tmp_path):
    path = workflow_store(tmp_path, tiny_store_path)
    with h5py.File(path, "r+") as f:
        f.attrs["config"] = json.dumps({"run": {"epochs": 4, "seed": 0, "model_options": {"hidden": [8, 8]}}})
    same = {"run": {"epochs": 4, "seed": 0, "model_options": {"hidden": (8, 8)}}}  # tuples are lists in JSON
    assert CheckpointStore(path, expected=same).epochs == [0, 1, 2, 3, 4]
    other = {"run": {"epochs": 6, "seed": 0, "model_options": {"hidden": [8, 8]}, "label_noise": 0.2}}
    assert message_of(path, expected=other) == (
        f"`{path}` is stale: it was written for another config (run.epochs: 4 in the file, 6 in this "
        f"job's config; run.label_noise: absent in the file, 0.2 in this job's config). {REBUILD_BY_TRAIN}"
    )
    assert "recipe: absent in the file" in message_of(path, expected={"recipe": {"lr": 0.1}})


def test_a_read_error_inside_a_reader_names_the_file(tmp_path):
    path = tmp_path / "results/runs/r/composite/test_d1.h5"
    with atomic_h5(path, {}) as f:
        f.create_dataset(
            "x", data=np.arange(50_000.0).reshape(50, 1000), chunks=(1, 1000), compression="gzip"
        )
    with h5py.File(path, "r") as f:
        offset = f["x"].id.get_chunk_info(10).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 200)
    with pytest.raises(UnusableInputError) as excinfo, open_h5(path, ("x",)) as f:
        f["x"][10]
    assert str(excinfo.value) == (
        f"`{path}` could not be read (Can't synchronously read data (filter returned failure during read)); "
        f"it was written by this featdyn version ({featdyn.__version__}), so it is incomplete. "
        "It is rebuilt by rule `composite`: delete it and run snakemake again."
    )


READERS = {
    "results/data/mnist1d.h5": ("download", read_dataset),
    "results/data/mnist1d-c.h5": ("corrupt", corrupted_sets),
    "results/runs/r/checkpoints.h5": ("train` or `import_run", CheckpointStore),
    "results/runs/r/continue/reinit_d2/checkpoints.h5": ("continue_reinit", CheckpointStore),
    "results/runs/r/composite/gaussian_blur-5_d2.h5": ("composite", read_band),
    "results/runs/r/composite/test_d1.h5": ("composite", lambda p: memory_window_frame([({}, p)])),
    "results/runs/r/dynamics/trajectories.h5": ("trajectories", read_trajectories),
    "results/runs/r/dynamics/pca_d2.h5": ("pca_perturbation", read_pca_perturbation),
    "results/runs/r/dynamics/drift.h5": ("drift", read_drift),
    "results/runs/r/isotropy/e4_d2.h5": ("isotropy", read_isotropy),
    "results/runs/r/separation.h5": ("separation", read_separation),
    "results/phase/cells/label_noise-0.5_a0.1.h5": ("phase_cell", read_cell),
    "results/springblock/dynamics.h5": ("springblock_dynamics", read_dynamics),
}


@pytest.mark.parametrize("relative", list(READERS))
def test_every_reader_reports_a_damaged_file_with_its_rule(tmp_path, relative):
    rule, reader = READERS[relative]
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(UnusableInputError, match=re.escape(f"`{path}` is not an HDF5 file")) as excinfo:
        reader(path)
    assert str(excinfo.value).endswith(f"rebuilt by rule `{rule}`: delete it and run snakemake again.")


def test_a_file_outside_the_workflow_layout_gets_a_generic_remedy(tmp_path):
    path = tmp_path / "elsewhere.h5"
    path.write_bytes(b"")
    with pytest.raises(
        UnusableInputError, match="empty .*Delete it and rebuild it with the step that wrote it"
    ):
        read_band(path)


def workflow_h5_outputs() -> set[tuple[str, str]]:
    """(output pattern, rule) of every literal `.h5` output in workflow/rules/*.smk."""
    found = set()
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            rule = block.split(":", 1)[0]
            output = re.search(r"^    output:\n((?:        .*\n|\s*\n)+)", block, flags=re.M)
            for pattern in re.findall(r'"(results/[^"]+\.h5)"', output.group(1) if output else ""):
                found.add((pattern, rule))
    return found


def test_the_rule_table_lists_every_hdf5_output_of_the_workflow():
    assert workflow_h5_outputs() == set(PRODUCERS)
    assert producing_rule("/scratch/me/featdyn/results/data/cifar10-c.h5") == "corrupt"
    assert producing_rule("results/data/cifar10.h5") == "download"
    assert producing_rule("results/runs/a/b/checkpoints.h5") is None  # no run name holds a slash


# --- SIGTERM during training -------------------------------------------------------------------


def test_an_epoch_stopped_between_batches_resumes_bit_for_bit():
    """Stop after batch 2 of 6, then finish from the cursor: same weights, optimizer state and sums
    as one uninterrupted epoch (dropout draws from the global generator, so its state matters)."""
    data, spec = tensor_data(tiny_arrays()), tiny_spec()
    whole = dropout_model()
    whole_optimizer = make_optimizer(whole, spec.recipe)
    expected = train_epoch(whole, whole_optimizer, data, spec, 1)

    model = dropout_model()
    optimizer = make_optimizer(model, spec.recipe)
    asked = iter(range(100))
    with pytest.raises(EpochStopped) as stopped:
        train_epoch(model, optimizer, data, spec, 1, should_stop=lambda: next(asked) == 1)
    cursor = stopped.value.cursor
    assert (cursor.epoch, cursor.next_start, cursor.batch(40, 240)) == (1, 80, "batch 3 of 6")
    torch.manual_seed(123)  # whatever ran in between (the rerun's start-up) must not matter
    assert train_epoch(model, optimizer, data, spec, 1, resume=cursor) == expected
    for name, value in whole.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    momentum = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(
        torch.equal(a, whole_optimizer.state[p]["momentum_buffer"])
        for a, p in zip(momentum, whole.parameters())
    )


def test_sigterm_after_an_epoch_stops_with_the_resume_point_logged(tmp_path, caplog):
    """A signal that arrives outside an epoch's batches (here: in the epoch callback) stops after that
    epoch's state is saved; the handler is removed again afterwards."""

    def terminate_after_epoch_2(epoch: int, model) -> None:
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StoppedBySignal) as stopped:
        train_tiny_run(tmp_path, dropout_model(), tiny_spec(), terminate_after_epoch_2)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert str(stopped.value) == (
        f"training stopped by SIGTERM after epoch 2; resume state written to {tmp_path / 'state/resume.pt'}: "
        "running the job again resumes at epoch 3"
    )
    assert str(stopped.value) in caplog.text
    assert signal.getsignal(signal.SIGTERM) is before
    assert not (tmp_path / "checkpoints.h5").exists()
    assert torch.load(tmp_path / "state/resume.pt", weights_only=False)["epoch"] == 2


SIGTERM_RUN = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from helpers import dropout_model, tiny_spec, train_tiny_run

run_dir, marker = Path(sys.argv[1]), Path(sys.argv[2])
model, calls = dropout_model(), [0]

def slow_training_batches(module, inputs):
    if module.training:  # training batches only; 6 per epoch
        calls[0] += 1
        if calls[0] == 6 + 3:  # epoch 2, batch 3
            marker.touch()
        time.sleep(0.05)

model.register_forward_pre_hook(slow_training_batches)
train_tiny_run(run_dir, model, tiny_spec())
"""


def test_sigterm_mid_epoch_to_a_training_process_then_rerun_gives_identical_checkpoints(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    run_dir, marker = tmp_path / "stopped", tmp_path / "mid-epoch-2"
    command = [sys.executable, "-c", SIGTERM_RUN, str(run_dir), str(marker)]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    resume = torch.load(run_dir / "state/resume.pt", weights_only=False)
    cursor = resume["cursor"]
    assert resume["epoch"] == 1 and cursor["epoch"] == 2 and 3 * 40 <= cursor["next_start"] < 240
    batch = cursor["next_start"] // 40 + 1
    assert (
        f"training stopped by SIGTERM during epoch 2; resume state written to {run_dir / 'state/resume.pt'}: "
        f"running the job again resumes at epoch 2, batch {batch} of 6"
    ) in stderr
    assert not (run_dir / "checkpoints.h5").exists()

    train_tiny_run(run_dir, dropout_model(), tiny_spec())  # the rerun
    train_tiny_run(tmp_path / "whole", dropout_model(), tiny_spec())
    with (
        h5py.File(run_dir / "checkpoints.h5") as resumed,
        h5py.File(tmp_path / "whole/checkpoints.h5") as whole,
    ):
        names = []
        whole.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        assert "state/stages.0.1.weight" in names and "metrics/train_loss" in names
        for name in names:
            if name != "optimizer_state":
                assert np.array_equal(resumed[name][()], whole[name][()]), name
    for epoch in range(4):
        a, b = (
            CheckpointStore(p).optimizer_state(epoch)
            for p in (run_dir / "checkpoints.h5", tmp_path / "whole/checkpoints.h5")
        )
        assert all(
            torch.equal(a["state"][k]["momentum_buffer"], b["state"][k]["momentum_buffer"])
            for k in b["state"]
        )
    assert not (run_dir / "state").exists()


# --- writes that fail --------------------------------------------------------------------------


def test_disk_full_while_writing_the_store_leaves_nothing_and_names_the_path(tmp_path, monkeypatch):
    """ENOSPC on the third dataset of `checkpoints.h5`: no store, no temporary file; the resume state
    stays, so the rerun only assembles the store."""
    real = h5py.Group.create_dataset
    calls = iter(range(100))

    def full_disk(self, *args, **kwargs):
        if next(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", full_disk)
    with pytest.raises(OutputWriteError) as excinfo:
        train_tiny_run(tmp_path, dropout_model(), tiny_spec(1))
    path = tmp_path / "checkpoints.h5"
    assert str(excinfo.value) == (
        f"could not write `{path}`: the file system is full ([Errno 28] No space left on device). "
        f"No partial file was left behind; free space there (`df -h {tmp_path}`) and run again."
    )
    assert excinfo.value.errno == errno.ENOSPC and isinstance(excinfo.value, OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    monkeypatch.undo()
    train_tiny_run(tmp_path, dropout_model(), tiny_spec(1))
    assert CheckpointStore(path).epochs == [0, 1]


def test_write_into_a_read_only_folder_names_the_path(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores the mode: refuse as the kernel would for a user

        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(OutputWriteError) as excinfo:
            write_tsv(pd.DataFrame({"a": [1]}), folder / "table.tsv")
    finally:
        folder.chmod(0o755)
    message = str(excinfo.value)
    assert message.startswith(f"could not write `{folder / 'table.tsv'}`: permission denied ([Errno 13] ")
    assert message.endswith(
        f"No partial file was left behind; make `{folder}` writable for this user and run again."
    )
    assert list(folder.iterdir()) == []


def test_a_failed_hdf5_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "band.h5"
    with atomic_h5(path, {"version": 1}) as f:
        f["x"] = [1]
    with pytest.raises(OutputWriteError, match=re.escape(f"could not write `{path}`: the disk quota")):
        with atomic_h5(path, {"version": 2}) as f:
            f["x"] = [2]
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    with h5py.File(path) as f:
        assert f["x"][()].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["band.h5"]

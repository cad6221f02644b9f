import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import tiny_arrays, train_tiny

from featdyn.checkpoints import CheckpointStore
from featdyn.data import Arrays, tensor_data
from featdyn.models import build_model
from featdyn.train import Recipe, TrainSpec, augment_batch, train_run

TESTS = Path(__file__).parent


def states_of(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f["state"][name][()] for name in f["state"]}


def test_store_layout(tiny_store_path):
    store = CheckpointStore(tiny_store_path)
    assert store.epochs == [0, 1, 2, 3, 4]
    assert list(store.metrics.columns) == ["epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"]
    assert store.metrics["lr"].tolist() == pytest.approx([0.05, 0.05, 0.05, 0.005, 0.005])
    assert store.metrics["test_acc"].iloc[-1] > 0.4  # well above chance (0.1): the tiny task is learnt
    model = store.model_at(4)
    assert set(model.state_dict()) == set(store.state_names)
    assert "state" in store.optimizer_state(4)


def test_two_runs_with_one_seed_are_identical(tmp_path):
    a, _, _ = train_tiny(tmp_path / "a", epochs=2)
    b, _, _ = train_tiny(tmp_path / "b", epochs=2)
    sa, sb = states_of(a), states_of(b)
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    c, _, _ = train_tiny(tmp_path / "c", epochs=2, seed=1)
    assert not np.array_equal(states_of(c)["stages.0.1.weight"], sa["stages.0.1.weight"])


KILLABLE_RUN = """
import sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from helpers import train_tiny
train_tiny(Path(sys.argv[1]), epochs=8, on_epoch=lambda epoch, model: time.sleep(0.3))
"""


def test_killed_run_resumes_to_identical_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_RUN, str(run_dir)], env=env)
    resume = run_dir / "state" / "resume.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if resume.exists() and torch.load(resume, weights_only=False)["epoch"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "checkpoints.h5").exists(), "the run finished before it could be killed"
    killed_at = torch.load(resume, weights_only=False)["epoch"]
    assert 3 <= killed_at < 8
    subprocess.run([sys.executable, "-c", KILLABLE_RUN, str(run_dir)], env=env, check=True, timeout=300)
    subprocess.run(
        [sys.executable, "-c", KILLABLE_RUN, str(tmp_path / "whole")], env=env, check=True, timeout=300
    )
    resumed, whole = states_of(run_dir / "checkpoints.h5"), states_of(tmp_path / "whole" / "checkpoints.h5")
    assert all(np.array_equal(resumed[k], whole[k]) for k in whole)
    assert CheckpointStore(run_dir / "checkpoints.h5").epochs == list(range(9))
    assert not (run_dir / "state").exists()


def test_stale_resume_state_from_another_config_is_discarded(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    torch.save({"fingerprint": "other", "epoch": 3}, state / "resume.pt")
    path, _, _ = train_tiny(tmp_path, epochs=1)
    assert CheckpointStore(path).epochs == [0, 1]


def test_nan_loss_fails_clearly(tmp_path):
    data = tensor_data(tiny_arrays())
    model = build_model("mlp", data.sample_shape, 10)
    spec = TrainSpec(Recipe(optimizer="sgd", lr=1e30, momentum=0.0, batch_size=40), 2)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train_run(
            model,
            data,
            spec,
            state_dir=tmp_path / "s",
            out_path=tmp_path / "c.h5",
            model_spec={},
            labels={},
            provenance={},
            progress=False,
        )


def test_save_every_keeps_first_and_last_epochs():
    spec = TrainSpec(Recipe(), epochs=10, save_every=4)
    assert spec.saved_epochs() == [0, 4, 8, 10]


def test_lr_schedule_steps_after_milestones():
    recipe = Recipe(lr=0.1, milestones=(100, 150), gamma=0.1)
    assert [recipe.lr_at(e) for e in (1, 100, 101, 150, 151)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_batched_augmentation_crops_and_flips():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment_batch(x, 0, g)  # no padding: only flips
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    padded = augment_batch(x, 2, torch.Generator().manual_seed(1))
    assert padded.shape == x.shape
    # each output is a window of the zero-padded (possibly flipped) image
    big = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [
            img[:, dy : dy + 8, dx : dx + 8]
            for img in (big[i], big[i].flip(-1))
            for dy in range(5)
            for dx in range(5)
        ]
        assert any(torch.equal(padded[i], w) for w in windows)


# --- memory format and precision -------------------------------------------------------------------


def image_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 120)
    x = (rng.standard_normal((120, 2, 8, 8)) + y[:, None, None, None]).astype(np.float32)
    return tensor_data(Arrays(x[:96], y[:96], x[96:], y[96:], 4, "synthetic"))


class Interrupted(Exception):
    pass


def train_cnn(folder: Path, precision: str, stop_after: int | None = None) -> Path:
    """A small CNN on 8×8 images with augmentation, optionally interrupted after epoch `stop_after`."""
    torch.manual_seed(0)
    model = build_model("cnn", (2, 8, 8), 4, widths=(4, 8))
    spec = TrainSpec(Recipe(lr=0.05, batch_size=32, augment=True, crop_padding=1, precision=precision), 4)

    def interrupt(epoch: int, trained) -> None:
        assert trained.stages[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        if epoch == stop_after:
            raise Interrupted

    train_run(
        model,
        image_data(),
        spec,
        state_dir=folder / "state",
        out_path=folder / "checkpoints.h5",
        model_spec={"name": "cnn", "sample_shape": [2, 8, 8], "classes": 4, "options": {"widths": [4, 8]}},
        labels={},
        provenance={},
        on_epoch=interrupt,
        progress=False,
    )
    return folder / "checkpoints.h5"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_image_models_train_in_channels_last_and_resume_bit_identically(tmp_path, precision):
    with pytest.raises(Interrupted):  # epoch 3's state is lost, epoch 2's resume state is kept
        train_cnn(tmp_path / "resumed", precision, stop_after=3)
    resumed = states_of(train_cnn(tmp_path / "resumed", precision))
    whole = states_of(train_cnn(tmp_path / "whole", precision))
    assert all(np.array_equal(resumed[k], whole[k]) for k in whole)
    assert (
        CheckpointStore(tmp_path / "whole" / "checkpoints.h5").metrics["test_acc"].iloc[-1] > 0.5
    )  # chance 0.25


def test_bf16_training_differs_from_fp32_only_by_rounding(tmp_path):
    fp32 = CheckpointStore(train_cnn(tmp_path / "fp32", "fp32")).metrics
    bf16 = CheckpointStore(train_cnn(tmp_path / "bf16", "bf16")).metrics
    assert not np.array_equal(fp32["train_loss"], bf16["train_loss"])
    np.testing.assert_allclose(bf16["train_loss"], fp32["train_loss"], rtol=0.05)

import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_arrays
from safetensors.torch import save_file

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine
from featdyn.data import tensor_data
from featdyn.external import build_external
from featdyn.importing import (
    CheckpointImportError,
    check_external_checkpoints,
    discover_checkpoints,
    import_checkpoints,
)
from featdyn.models import build_model
from featdyn.train import METRIC_COLUMNS

NET = """
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(40, 16)
        self.bn = nn.BatchNorm1d(16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc2(self.relu(self.bn(self.fc1(x))))
"""
STAGES = [["fc1", "bn", "relu"], "fc2"]
EPOCHS = [0, 2, 5]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


@pytest.fixture(scope="module")
def data():
    return tensor_data(tiny_arrays(n_train=60, n_test=50))


@pytest.fixture
def net(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(NET))
    return f"{path}:Net"


def _original_states(seed: int = 0) -> dict[int, dict[str, torch.Tensor]]:
    """The user's own state dicts: random weights and BatchNorm statistics per epoch."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"fc1.weight": (16, 40), "fc1.bias": (16,), "bn.weight": (16,), "bn.bias": (16,)}
    shapes |= {"bn.running_mean": (16,), "fc2.weight": (10, 16), "fc2.bias": (10,)}
    states = {}
    for epoch in EPOCHS:
        state = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
        state["bn.running_var"] = torch.rand(16, generator=g) + 0.5
        state["bn.num_batches_tracked"] = torch.tensor(epoch * 10)
        states[epoch] = state
    return states


def _save_series(folder, states, form: str) -> str:
    folder.mkdir()
    for epoch, state in states.items():
        if form == "plain":
            torch.save(state, folder / f"ckpt_{epoch}.pt")
        elif form == "state_dict":
            torch.save({"state_dict": state, "epoch": epoch}, folder / f"ckpt_{epoch}.pt")
        elif form == "lightning":
            wrapped = {f"model.{k}": v for k, v in state.items()}
            torch.save(
                {"state_dict": wrapped, "global_step": 7}, folder / f"epoch={epoch}-step={7 * epoch}.ckpt"
            )
        elif form == "safetensors":
            save_file(
                {k: v.contiguous() for k, v in state.items()},
                str(folder / f"weights-{epoch:03d}.safetensors"),
            )
    return {
        "plain": str(folder / "ckpt_{epoch}.pt"),
        "state_dict": str(folder / "*.pt"),
        "lightning": str(folder / "*.ckpt"),
        "safetensors": str(folder),
    }[form]


@pytest.mark.parametrize("form", ["plain", "state_dict", "lightning", "safetensors"])
def test_imported_state_is_identical_to_the_original_tensors(tmp_path, net, data, form):
    states = _original_states()
    spec = _save_series(tmp_path / "ckpts", states, form)
    model = build_external(net, (40,), 10, stages=STAGES)
    model_spec = {"name": net, "sample_shape": [40], "classes": 10, "options": {"stages": STAGES}}
    out = tmp_path / "checkpoints.h5"
    metrics = import_checkpoints(spec, model, model_spec, data, out, {"import": form})
    store = CheckpointStore(out)
    assert store.epochs == EPOCHS
    assert store.model_spec == model_spec
    for epoch, original in states.items():
        imported = model.to_original(store.state_dict(epoch))
        assert imported.keys() == original.keys()
        for key, value in original.items():
            assert torch.equal(imported[key], value), (epoch, key)
    assert store.optimizer_state(EPOCHS[0]) is None
    np.testing.assert_array_equal(store.labels["train"], data.y_train.numpy())
    assert list(metrics.columns) == METRIC_COLUMNS
    assert list(store.metrics.columns) == METRIC_COLUMNS
    assert metrics["lr"].isna().all()
    for row, (epoch, state) in zip(metrics.itertuples(), states.items()):
        for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
            loss, acc = _reference_metrics(state, x, y)
            assert row.epoch == epoch
            assert getattr(row, f"{split}_acc") == pytest.approx(acc, abs=1e-12)
            assert getattr(row, f"{split}_loss") == pytest.approx(loss, rel=1e-5)


def _reference_metrics(state, x, y) -> tuple[float, float]:
    """Eval-mode forward of the user's network written out by hand (BatchNorm with running statistics)."""
    h = x @ state["fc1.weight"].T + state["fc1.bias"]
    h = (h - state["bn.running_mean"]) / torch.sqrt(state["bn.running_var"] + 1e-5)
    h = torch.relu(h * state["bn.weight"] + state["bn.bias"])
    logits = h @ state["fc2.weight"].T + state["fc2.bias"]
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).double().mean().item()


def test_imported_store_feeds_the_composite_engine(tmp_path, net, data):
    spec = _save_series(tmp_path / "ckpts", _original_states(), "plain")
    model = build_external(net, (40,), 10, stages=STAGES)
    import_checkpoints(spec, model, {"name": net}, data, tmp_path / "c.h5", {})
    store = CheckpointStore(tmp_path / "c.h5")
    engine = CompositeEngine(model, store.stacked(store.epochs), depth=1)
    logits = engine.deep(engine.shallow(data.x_test), slice(None))
    for i, epoch in enumerate(store.epochs):  # c_{t,t} = f^(t)
        model.load_state_dict(store.state_dict(epoch))
        torch.testing.assert_close(logits[i], model.eval()(data.x_test))  # vmap: batched matmul kernels


def test_featdyn_models_import_with_their_own_keys(tmp_path, data):
    folder = tmp_path / "own"
    folder.mkdir()
    states = {}
    for epoch in (1, 3):
        torch.manual_seed(epoch)
        states[epoch] = build_model("resnet1d", (40,), 10).state_dict()
        torch.save({"model": {f"net.{k}": v for k, v in states[epoch].items()}}, folder / f"e{epoch}.pth")
    model = build_model("resnet1d", (40,), 10)
    import_checkpoints(folder, model, {"name": "resnet1d"}, data, tmp_path / "c.h5", {})
    store = CheckpointStore(tmp_path / "c.h5")
    for epoch, state in states.items():
        assert all(torch.equal(store.state_dict(epoch)[k], v) for k, v in state.items())


def test_epochs_come_from_the_pattern_or_the_file_names(tmp_path):
    (tmp_path / "a").mkdir()
    for e in (3, 10, 1):
        (tmp_path / "a" / f"run7_ckpt{e:02d}.pt").touch()
        (tmp_path / "a" / f"epoch_{e}_step_{e * 100}.safetensors").touch()
    by_pattern = discover_checkpoints(tmp_path / "a" / "run7_ckpt{epoch:02d}.pt")
    assert list(by_pattern) == [1, 3, 10]
    assert by_pattern[10].name == "run7_ckpt10.pt"
    assert list(discover_checkpoints(str(tmp_path / "a" / "run7_*.pt"))) == [1, 3, 10]  # the varying number
    assert list(discover_checkpoints(str(tmp_path / "a" / "*.safetensors"))) == [1, 3, 10]
    (tmp_path / "b").mkdir()
    for name in ("x1_y5.pt", "x2_y6.pt"):
        (tmp_path / "b" / name).touch()
    with pytest.raises(CheckpointImportError, match=r"cannot tell the epoch .*\{epoch\}"):
        discover_checkpoints(str(tmp_path / "b" / "*.pt"))
    with pytest.raises(CheckpointImportError, match="no checkpoint files match"):
        discover_checkpoints(str(tmp_path / "b" / "*.safetensors"))
    for e in (4, 8):
        (tmp_path / "d" / f"step_{e}").mkdir(parents=True)
        (tmp_path / "d" / f"step_{e}" / "model.safetensors").touch()
    assert list(discover_checkpoints(str(tmp_path / "d" / "*" / "model.safetensors"))) == [4, 8]
    assert list(discover_checkpoints(str(tmp_path / "d" / "step_{epoch}" / "model.safetensors"))) == [4, 8]
    (tmp_path / "d" / "latest").mkdir()
    (tmp_path / "d" / "latest" / "model.safetensors").touch()
    with pytest.raises(CheckpointImportError, match=r"\['latest/model.safetensors'\] hold no epoch number"):
        discover_checkpoints(str(tmp_path / "d" / "*" / "model.safetensors"))
    (tmp_path / "c").mkdir()
    for name in ("ckpt_1.pt", "ckpt_01.pt"):
        (tmp_path / "c" / name).touch()
    with pytest.raises(CheckpointImportError, match="epoch 1 is given by two files"):
        discover_checkpoints(str(tmp_path / "c" / "ckpt_{epoch}.pt"))


def test_missing_epoch_is_reported_with_the_found_ones(tmp_path):
    spec = _save_series(tmp_path / "ckpts", _original_states(), "plain")
    assert list(check_external_checkpoints(spec, epochs=[0, 5])) == [0, 5]
    with pytest.raises(CheckpointImportError, match=r"lack the epochs \[1, 4\]; found epochs \[0, 2, 5\]"):
        check_external_checkpoints(spec, epochs=[0, 1, 4, 5])


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path, net, data):
    states = _original_states()
    states[0]["fc2.weight"] = torch.zeros(10, 17)
    spec = _save_series(tmp_path / "ckpts", states, "plain")
    model = build_external(net, (40,), 10, stages=STAGES)
    with pytest.raises(
        CheckpointImportError, match=r"ckpt_0.pt: 'fc2.weight' has shape \(10, 17\).*\(10, 16\)"
    ):
        check_external_checkpoints(spec, model=model)  # config time: the first file only
    with pytest.raises(CheckpointImportError, match=r"epoch 0: .*'fc2.weight' has shape \(10, 17\)"):
        import_checkpoints(spec, model, {}, data, tmp_path / "c.h5", {})
    assert not (tmp_path / "c.h5").exists()


def test_missing_and_unexpected_keys_are_reported(tmp_path, net):
    model = build_external(net, (40,), 10, stages=STAGES)
    states = _original_states()
    del states[0]["bn.running_mean"]
    spec = _save_series(tmp_path / "missing", states, "plain")
    with pytest.raises(CheckpointImportError, match=r"lacks 1 of the model's 8 .*'bn.running_mean'"):
        check_external_checkpoints(spec, model=model)
    states = _original_states()
    states[0]["fc3.weight"] = torch.zeros(3)
    spec = _save_series(tmp_path / "extra", states, "plain")
    with pytest.raises(CheckpointImportError, match=r"keys the model does not have: \['fc3.weight'\]"):
        check_external_checkpoints(spec, model=model)


def test_unreadable_files_are_named(tmp_path):
    spec = _save_series(tmp_path / "ckpts", _original_states(), "plain")
    (tmp_path / "ckpts" / "ckpt_2.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointImportError, match=r"unreadable checkpoint file .*ckpt_2.pt"):
        check_external_checkpoints(spec)
    folder = _save_series(tmp_path / "st", _original_states(), "safetensors")
    truncated = tmp_path / "st" / "weights-005.safetensors"
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(CheckpointImportError, match=r"weights-005.safetensors.*truncated"):
        check_external_checkpoints(folder)


def test_pickled_objects_are_refused_with_advice(tmp_path, net, data):
    folder = tmp_path / "pickled"
    folder.mkdir()
    model = build_external(net, (40,), 10, stages=STAGES)
    torch.save(model, folder / "ckpt_0.pt")  # a whole module, not a state dict
    with pytest.raises(
        CheckpointImportError, match=r"ckpt_0.pt holds objects that weights_only .*state_dict"
    ):
        check_external_checkpoints(str(folder / "ckpt_{epoch}.pt"), model=model)

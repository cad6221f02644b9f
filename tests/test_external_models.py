import dataclasses
import textwrap

import numpy as np
import pytest
import torch
import torchvision
from helpers import tiny_arrays
from torch import nn

from featdyn.composite import CompositeEngine, EpochStates, choose_strategy, composite_band, vmap_supported
from featdyn.data import tensor_data
from featdyn.external import ExternalModelError, StageMapError, build_external, is_external, probe_input
from featdyn.vit import vit

NET = """
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = self.pool(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


class Functional(Net):
    \"\"\"Functional operations between the modules: only split points of the traced graph capture them.\"\"\"

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.gelu(self.conv2(x)).mean((2, 3))
        return self.fc(x)


class WithOptions(Net):
    \"\"\"A forward argument with a default and a non-persistent buffer used outside any leaf module.\"\"\"

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.register_buffer("scale", torch.tensor(0.5), persistent=False)

    def forward(self, x, mask=None):
        x = F.relu(self.bn(self.conv(x))) * self.scale
        if mask is not None:
            x = x * mask
        return self.fc(torch.flatten(self.pool(self.conv2(x)), 1))


class ModeDependent(Net):
    def forward(self, x):
        x = self.conv(x) * (2.0 if self.training else 1.0)
        return self.fc(torch.flatten(self.pool(self.conv2(x)), 1))


class Gate(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class Branchy(Net):
    \"\"\"Data-dependent control flow in a module: vmap over stacked weights cannot batch it.\"\"\"

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.gate = Gate()

    def forward(self, x):
        x = self.pool(self.conv2(self.relu(self.bn(self.conv(x)))))
        return self.fc(self.gate(torch.flatten(x, 1)))


def make(num_classes, width=8):
    return Net(num_classes, width)


def fixed_classes(width=8):
    return Net(7, width)
"""

NET_MAP = [["conv", "bn", "relu"], ["conv2", "pool", "flatten", "fc"]]
SHAPE = (3, 8, 8)
BLOCKS = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
STEM, HEAD = ["conv1", "bn1", "relu", "maxpool"], ["avgpool", "flatten", "fc"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


@pytest.fixture
def net_file(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(NET))
    return path


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics, so that eval-mode BatchNorm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _exact_at_every_depth(staged, reference: nn.Module, shape) -> None:
    x = torch.randn(3, *shape)
    with torch.no_grad():
        expected = reference.eval()(x)
        staged.eval()
        for depth in range(1, staged.n_stages):
            assert torch.equal(staged(staged(x, 0, depth), depth), expected)


def test_model_from_a_file_path(net_file):
    name = f"{net_file}:make"
    assert is_external(name)
    torch.manual_seed(0)
    staged = build_external(name, SHAPE, 5, stages=NET_MAP, width=6)
    assert staged.n_stages == 2
    assert staged.stages[1].get_submodule("fc").out_features == 5  # num_classes passed to the factory
    assert staged.stages[0].get_submodule("conv").out_channels == 6  # model options too
    assert staged.key_map["conv.weight"] == "stages.0.conv.weight"
    assert staged.key_map["fc.bias"] == "stages.1.fc.bias"
    reference = _net_module(net_file).Net(5, 6)
    reference.load_state_dict(staged.to_original(staged.state_dict()))
    _exact_at_every_depth(staged, reference, SHAPE)


def _net_module(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("reference_net", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_from_an_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_outside_nets.py").write_text(textwrap.dedent(NET))
    monkeypatch.syspath_prepend(str(tmp_path))
    staged = build_external("my_outside_nets:Net", SHAPE, 3, stages=NET_MAP)
    assert staged.stages[1].get_submodule("fc").out_features == 3
    with pytest.raises(ExternalModelError, match="has no callable 'Nett'.*'Net'"):
        build_external("my_outside_nets:Nett", SHAPE, 3, stages=NET_MAP)
    with pytest.raises(ExternalModelError, match="cannot import 'no_such_package_xyz'"):
        build_external("no_such_package_xyz:Net", SHAPE, 3, stages=NET_MAP)


def test_factory_without_num_classes_is_checked_against_the_dataset(net_file):
    with pytest.raises(ExternalModelError, match=r"to \(2, 7\), not \(2, 10\) .*num_classes"):
        build_external(f"{net_file}:fixed_classes", SHAPE, 10, stages=NET_MAP)
    assert build_external(f"{net_file}:fixed_classes", SHAPE, 7, stages=NET_MAP).n_stages == 2


def test_torchvision_resnet18_needs_no_stage_map_and_is_exact():
    torch.manual_seed(0)
    staged = build_external("torchvision:resnet18", (3, 32, 32), 10)
    assert staged.n_stages == 1 + 8 + 1  # stem, every basic block, pool + linear head
    _randomise_bn(staged)
    reference = torchvision.models.resnet18(num_classes=10)
    original = staged.to_original(staged.state_dict())
    assert list(original) == list(reference.state_dict())  # every key, BatchNorm buffers included
    reference.load_state_dict(original)
    _exact_at_every_depth(staged, reference, (3, 32, 32))
    assert staged.to_original(staged.to_staged(original)).keys() == original.keys()


@pytest.mark.parametrize(
    "name", ["mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5", "regnet_x_400mf", "densenet121"]
)
def test_torchvision_family_maps_are_exact(name):
    torch.manual_seed(0)
    staged = build_external(f"torchvision:{name}", (3, 32, 32), 10)
    reference = torchvision.models.get_model(name, weights=None, num_classes=10)
    reference.load_state_dict(staged.to_original(staged.state_dict()))
    _exact_at_every_depth(staged, reference, (3, 32, 32))


@pytest.mark.filterwarnings("ignore:There is a performance drop")  # nn.MultiheadAttention under vmap
def test_torchvision_vit_class_token_belongs_to_the_embedding_stage():
    name = "torchvision.models.vision_transformer:VisionTransformer"
    options = dict(image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32)
    staged = build_external(name, (3, 16, 16), 10, **options)
    assert staged.n_stages == 1 + 2 + 1
    assert staged.key_map["class_token"] == "stages.0.class_token"
    assert staged.key_map["encoder.pos_embedding"] == "stages.0.encoder.pos_embedding"
    reference = torchvision.models.VisionTransformer(num_classes=10, **options)
    reference.load_state_dict(staged.to_original(staged.state_dict()))
    _exact_at_every_depth(staged, reference, (3, 16, 16))
    stacked = _stacked([staged.state_dict()] * 3, noise=0.05)  # traced stages under vmap
    engine = CompositeEngine(staged.eval(), stacked, depth=2)
    x = torch.randn(4, 3, 16, 16)
    logits = engine.deep(engine.shallow(x), slice(None))
    with torch.no_grad():
        for i in range(3):
            reference.load_state_dict(staged.to_original({k: v[i] for k, v in stacked.items()}))
            torch.testing.assert_close(logits[i], reference.eval()(x))


@pytest.mark.parametrize(
    "stages, named",
    [
        ([["conv1", "bn1", "relu"], *BLOCKS, HEAD], r"'layer1.0'.*runs \['maxpool'\]"),
        ([STEM, "layer2", "layer1", "layer3", "layer4", HEAD], r"'layer2'.*\['layer1'\].*out of order"),
        ([STEM, *BLOCKS, ["avgpool", "fc"]], r"'fc'.*\(2, 512, 1, 1\) instead of \(2, 512\).*functional"),
        ([STEM, "layer1", "layer2", "layer4", HEAD], r"leaves out .*'layer3.0.bn1'"),
        ([STEM, "layer1", "layer5"], r"'layer5'.*does not have"),
    ],
    ids=["missing maxpool", "reordered", "missing flatten", "missing layer", "unknown module"],
)
def test_wrong_stage_maps_name_the_diverging_module(stages, named):
    with pytest.raises(StageMapError, match=named):
        build_external("torchvision:resnet18", (3, 32, 32), 10, stages=stages)


def test_split_points_keep_functional_operations(net_file):
    torch.manual_seed(0)
    staged = build_external(f"{net_file}:Functional", SHAPE, 4, split_at=["conv", "conv2"])
    assert staged.n_stages == 3
    reference = _net_module(net_file).Functional(4)
    reference.load_state_dict(staged.to_original(staged.state_dict()))
    _exact_at_every_depth(staged, reference, SHAPE)
    with pytest.raises(StageMapError, match=r"'conv2'.*after 'bn'.*functional operation"):
        build_external(f"{net_file}:Functional", SHAPE, 4, stages=[["conv", "bn"], ["conv2", "fc"]])


def test_split_points_drop_fixed_arguments_and_keep_buffer_persistence(net_file):
    staged = build_external(f"{net_file}:WithOptions", SHAPE, 4, split_at=["bn", "conv2"])
    assert staged.n_stages == 3
    assert not any("scale" in k for k in staged.state_dict())  # non-persistent, as in the original
    assert torch.equal(staged.stages[1].get_buffer("scale"), torch.tensor(0.5))
    reference = _net_module(net_file).WithOptions(4)
    reference.load_state_dict(staged.to_original(staged.state_dict()))
    _exact_at_every_depth(staged, reference, SHAPE)
    with pytest.raises(StageMapError, match="differs between train and eval mode"):
        build_external(f"{net_file}:ModeDependent", SHAPE, 4, split_at=["conv"])


def test_bad_split_points_are_rejected(net_file):
    with pytest.raises(StageMapError, match="not in the order of the forward pass"):
        build_external(f"{net_file}:Functional", SHAPE, 4, split_at=["conv2", "conv"])
    with pytest.raises(StageMapError, match="neither a module .* nodes: .*'relu'"):
        build_external(f"{net_file}:Functional", SHAPE, 4, split_at=["nowhere"])
    vit_name = "torchvision.models.vision_transformer:VisionTransformer"
    options = dict(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    inside_a_residual = ["encoder.dropout", "encoder.layers.encoder_layer_0.ln_1"]
    with pytest.raises(StageMapError, match="exactly one tensor"):
        build_external(vit_name, (3, 16, 16), 10, split_at=inside_a_residual, **options)


def test_weights_file_with_a_ddp_prefix_is_loaded(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(num_classes=10)
    _randomise_bn(source, seed=3)
    torch.save(
        {"model_state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pt"
    )
    torch.manual_seed(2)
    staged = build_external("torchvision:resnet18", (3, 32, 32), 10, weights_file=tmp_path / "w.pt")
    loaded = staged.to_original(staged.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_vmap_supported_detects_data_dependent_control_flow(net_file, caplog):
    stages = [["conv", "bn", "relu"], ["conv2", "pool", "flatten", "gate", "fc"]]
    staged = build_external(f"{net_file}:Branchy", SHAPE, 4, stages=stages)
    stacked = _stacked([staged.state_dict()] * 2, noise=0.1)
    x = torch.randn(8, *SHAPE)  # forward passes of fewer rows are padded to 8
    states = EpochStates.from_stacked(stacked)
    assert not vmap_supported(staged, x, states)
    assert choose_strategy(staged, x, states) == "loop"  # CPUs loop anyway, silently
    assert not caplog.records
    elsewhere = dataclasses.replace(states, device=torch.device("cuda"))  # where auto would take vmap
    assert choose_strategy(staged, x, elsewhere) == "loop"
    assert [r.getMessage().count("loops over them") for r in caplog.records] == [1]
    engine = CompositeEngine(staged, stacked, 1, strategy="loop", memory_format="contiguous")
    features = engine.shallow_features(x, range(2))
    with torch.no_grad():
        for i in range(2):
            staged.load_state_dict({k: v[i] for k, v in stacked.items()})
            assert torch.equal(features[i], staged.eval()(x, 0, 1))
            assert torch.equal(engine.deep_logits(i, features[i]), staged(x))


def _stacked(states, noise: float) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for k in states[0]:
        values = [s[k] for s in states]
        if values[0].is_floating_point():
            values = [v + noise * i * torch.randn(v.shape, generator=g) for i, v in enumerate(values)]
        out[k] = torch.stack(values)
    return out


def test_loop_engine_equals_the_vmap_engine_on_a_vit():
    models = []
    for seed in range(4):
        torch.manual_seed(seed)
        models.append(vit((40,), 10, dim=32, depth=3, heads=4))
    stacked = {k: torch.stack([m.state_dict()[k] for m in models]) for k in models[0].state_dict()}
    data = tensor_data(tiny_arrays(n_train=40, n_test=60))
    assert vmap_supported(models[0], probe_input((40,)), EpochStates.from_stacked(stacked))
    epochs = [0, 1, 2, 3]
    looped, batched = (
        composite_band(
            CompositeEngine(models[0], stacked, 2, strategy=s),
            epochs,
            data.x_test,
            data.y_test,
            None,
            [3],
            25,
        )
        for s in ("loop", "vmap")
    )
    for name in ("accuracy", "agreement", "consistency", "sample_consistency"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(looped, name), err_msg=name)
    np.testing.assert_allclose(batched.cross_entropy, looped.cross_entropy, rtol=1e-5)

import pytest
import torch

from featdyn.models import MODELS, build_model, depth_name, n_parameters, split

SHAPES = {
    "resnet20": (3, 32, 32),
    "resnet32": (3, 16, 16),
    "resnet56": (3, 8, 8),
    "resnet1d": (40,),
    "mlp": (1, 28, 28),
    "bottleneck_mlp": (40,),
    "deep_mlp": (1, 8, 8),
    "cnn": (3, 16, 16),
    "linear_net": (40,),
    "same_shape_cnn": (1, 8, 8),
    "vit": (40,),
}


def test_every_model_is_covered():
    assert set(SHAPES) == set(MODELS)


def test_resnet20_parameter_count():
    assert n_parameters(build_model("resnet20", (3, 32, 32), 10)) == 269_722


def test_resnet_depths_follow_blocks():
    assert build_model("resnet20", (3, 32, 32), 10).n_stages == 11  # stem + 9 blocks + head
    assert build_model("resnet32", (3, 32, 32), 10).n_stages == 17
    assert build_model("resnet56", (3, 32, 32), 10).n_stages == 29


def test_mlp_shapes():
    model = build_model("mlp", (1, 28, 28), 10)
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [256, 256, 10]
    bottleneck = build_model("bottleneck_mlp", (40,), 10)
    assert bottleneck(torch.randn(3, 40), 0, 2).shape == (3, 2)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_split_composition_is_exact_at_every_depth(name):
    torch.manual_seed(0)
    model = build_model(name, SHAPES[name], 10).eval()
    x = torch.randn(4, *SHAPES[name])
    with torch.no_grad():
        full = model(x)
        for depth in range(1, model.n_stages):
            shallow, deep = split(model, depth)
            assert torch.equal(deep(shallow(x)), full)
            assert torch.equal(model(model(x, 0, depth), depth), full)


def test_same_shape_cnn_keeps_every_layer_shape_at_the_papers_size():
    """Paper 2, SM S3: 16 channels, 7 conv layers with BN and ReLU, every layer the input's shape."""
    model = build_model("same_shape_cnn", (1, 28, 28), 10).eval()
    assert model.n_stages == 8
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        for depth in range(1, 8):
            assert model(x, 0, depth).shape == (2, 16, 28, 28)
        assert model(x).shape == (2, 10)


def test_split_rejects_missing_depth():
    model = build_model("mlp", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="1..2"):
        split(model, 3)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="resnet20"):
        build_model("vgg", (3, 32, 32), 10)


def test_stages_have_short_distinct_names():
    assert build_model("resnet20", (3, 32, 32), 10).stage_names == [
        "stem",
        *(f"block{g}.{i}" for g in (1, 2, 3) for i in (1, 2, 3)),
        "head",
    ]
    assert build_model("bottleneck_mlp", (40,), 10).stage_names == ["hidden", "bottleneck", "head"]
    assert build_model("vit", (40,), 10, depth=2).stage_names == ["embed", "block1", "block2", "head"]
    for name in sorted(SHAPES):
        names = build_model(name, SHAPES[name], 10).stage_names
        assert len(set(names)) == len(names) == build_model(name, SHAPES[name], 10).n_stages
    assert depth_name(build_model("cnn", (3, 16, 16), 10), 2) == "conv2"  # depth 2: after the second stage


def test_names_with_a_colon_are_outside_models():
    model = build_model("torchvision:resnet18", (3, 32, 32), 7)
    assert (
        model.n_stages == 10
        and model.stage_names[0] == "conv1…maxpool"
        and model.stage_names[1] == "layer1.0"
    )
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)

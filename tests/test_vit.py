import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_arrays

from featdyn.composite import CompositeEngine
from featdyn.data import tensor_data
from featdyn.train import Recipe, TrainSpec, evaluate, make_optimizer, train_epoch
from featdyn.vit import PatchEmbedding, attention, vit, vit_factory

SHAPES = {"images": (3, 32, 32), "signals": (40,), "multichannel signals": (2, 40)}
TOKENS = {"images": 1 + 8 * 8, "signals": 1 + 10, "multichannel signals": 1 + 10}  # class token + patches


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_stages_are_embedding_blocks_head_and_compose_exactly(kind):
    torch.manual_seed(0)
    model = vit(SHAPES[kind], 10, depth=3).eval()
    assert model.n_stages == 3 + 2
    assert isinstance(model.stages[0], PatchEmbedding)
    x = torch.randn(5, *SHAPES[kind])
    with torch.no_grad():
        full = model(x)
        assert full.shape == (5, 10)
        assert model(x, 0, 1).shape == (5, TOKENS[kind], 64)
        for depth in range(1, model.n_stages):
            assert torch.equal(model(model(x, 0, depth), depth), full)


def test_attention_matches_torch_sdpa():
    q, k, v = torch.randn(3, 2, 4, 11, 16).unbind(0)
    torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_patch_embedding_is_a_linear_map_of_each_patch():
    torch.manual_seed(0)
    embedding = PatchEmbedding(1, 4, 8, 10, spatial_dims=1)
    torch.nn.init.normal_(embedding.pos_embedding)
    x = torch.randn(2, 40)
    patches = x.view(2, 10, 4)  # patch j = x[:, 4j : 4j + 4]
    expected = patches @ embedding.proj.weight.view(8, 4).T + embedding.proj.bias
    tokens = embedding(x)
    torch.testing.assert_close(tokens[:, 1:], expected + embedding.pos_embedding[:, 1:])
    torch.testing.assert_close(
        tokens[:, 0], (embedding.cls_token + embedding.pos_embedding[:, :1])[0].expand(2, 8)
    )


def test_patch_size_must_divide_the_input():
    with pytest.raises(ValueError, match=r"patch=3 does not divide .*\[1, 2, 4, 5, 8, 10, 20, 40\]"):
        vit((40,), 10, patch=3)
    with pytest.raises(ValueError, match="not divisible by heads"):
        vit((40,), 10, dim=30, heads=4)


@pytest.mark.parametrize("kind", sorted(SHAPES))
def test_vmap_over_stacked_checkpoints_equals_each_checkpoint(kind):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(vit(SHAPES[kind], 10, depth=2).eval())
    stacked = {k: torch.stack([m.state_dict()[k] for m in models]) for k in models[0].state_dict()}
    engine = CompositeEngine(models[0], stacked, depth=2)
    x = torch.randn(6, *SHAPES[kind])
    features = engine.shallow(x)
    logits = engine.deep(features, slice(None))
    with torch.no_grad():
        for i, m in enumerate(models):
            assert torch.equal(features[i], m(x, 0, 2))  # vmap runs the same kernels as the plain forward
            assert torch.equal(logits[i], m(x))


def test_registry_factory_and_training_on_signals():
    arrays = tiny_arrays()
    data = tensor_data(arrays)
    torch.manual_seed(0)
    model = vit_factory(data.sample_shape, 10, depth=2)
    assert model.n_stages == 4
    recipe = Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=40)
    spec, optimizer = TrainSpec(recipe, 12), make_optimizer(model, recipe)
    _, before = evaluate(model, data.x_test, data.y_test)
    for epoch in range(1, 13):
        train_epoch(model, optimizer, data, spec, epoch)
    _, after = evaluate(model, data.x_test, data.y_test)
    assert before < 0.3 and after > 0.8  # 10 classes: chance is 0.1

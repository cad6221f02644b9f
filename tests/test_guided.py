"""Paper 2's Fig. S2 CNN and its phased training, and train vs test load curves (Fig. S4)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from featdyn.guided import (
    GuidedSettings,
    guided_training,
    set_dropout,
    train_test_load_curves,
)
from featdyn.models import build_model, same_shape_cnn
from featdyn.separation import separation_measures


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    pass


def test_every_conv_stage_keeps_the_shape() -> None:
    model = same_shape_cnn((1, 8, 6), 10)
    assert model.n_stages == 8
    x = model.stages[0](torch.randn(5, 1, 8, 6))
    assert x.shape == (5, 16, 8, 6)
    for stage in model.stages[1:7]:
        assert stage(x).shape == x.shape == (5, 16, 8, 6)
        x = stage(x)
        kinds = {type(m) for m in stage}
        assert {nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Upsample, nn.Dropout} <= kinds
    assert model.stages[7](x).shape == (5, 10)
    assert isinstance(model.stages[7][-1], nn.Linear)
    with pytest.raises(ValueError, match="even"):
        same_shape_cnn((1, 7, 8), 10)
    registered = build_model("same_shape_cnn", (1, 8, 6), 10, channels=4, n_conv=7)
    assert registered.n_stages == 8 and registered(torch.randn(2, 1, 8, 6)).shape == (2, 10)


def test_set_dropout_reaches_every_stage() -> None:
    model = same_shape_cnn((3, 4, 4), 2, channels=4, n_conv=3)
    set_dropout(model, 0.25)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.25] * 3


def tiny_images(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Two classes of 8×8 images: a bright left or right half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (96,), generator=g)
    x = 0.5 * torch.randn(96, 1, 8, 8, generator=g)
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    return x[:64], y[:64], x[64:], y[64:]


def test_train_and_test_load_curves_match_direct_features() -> None:
    x_train, y_train, x_test, y_test = tiny_images()
    torch.manual_seed(0)
    model = same_shape_cnn((1, 8, 8), 2, channels=4, n_conv=3).eval()
    curves = train_test_load_curves(model, x_train, y_train, x_test, y_test, 2)
    with torch.no_grad():
        for name, (x, y) in {"train": (x_train, y_train), "test": (x_test, y_test)}.items():
            assert curves[name]["D"].shape == (5,)
            for layer in (0, 2, 4):
                direct = separation_measures(model(x, 0, layer), y, 2)
                assert curves[name]["D"][layer] == pytest.approx(direct["D"], rel=1e-9)
                assert curves[name]["he_su"][layer] == pytest.approx(direct["he_su"], rel=1e-6)
            d = curves[name]["D"][:-1]
            assert curves[name]["curvature"] == pytest.approx(np.mean(d[2:] - 2 * d[1:-1] + d[:-2]))


SETTINGS = GuidedSettings(
    lr=1e-2,
    converge_loss=0.2,
    max_epochs=12,
    phase_epochs=4,
    dropouts=(0.0, 0.5),
    channels=4,
    n_conv=3,
    curve_every=2,
)


def test_phased_training_records_every_phase_and_replays_for_a_seed() -> None:
    data = tiny_images()
    phases = guided_training(*data, SETTINGS, seed=1)
    assert list(phases) == ["converged", "dropout_0", "dropout_0.5"]
    converged = phases["converged"]
    end = int(converged.epochs[-1])
    assert converged.epochs[0] == 0 and end <= 12
    assert converged.epoch_loss[-1] < 0.2 and end < 12
    assert np.all(converged.epoch_loss[:-1] >= 0.2)  # stopped at the first epoch below the threshold
    for name in ("dropout_0", "dropout_0.5"):
        phase = phases[name]
        np.testing.assert_array_equal(phase.epochs, [end, end + 2, end + 4])
        np.testing.assert_allclose(phase.train_D[0], converged.train_D[-1])  # continues the converged state
        assert phase.train_D.shape == (3, 5) and phase.test_D.shape == (5,) and len(phase.epoch_loss) == 4
        assert 0 <= phase.test_acc <= 1 and 0 <= phase.train_acc <= 1 and phase.seconds > 0
    assert phases["dropout_0.5"].dropout == 0.5
    assert not np.allclose(phases["dropout_0"].epoch_loss, phases["dropout_0.5"].epoch_loss)
    again = guided_training(*data, SETTINGS, seed=1)
    for name, phase in phases.items():
        np.testing.assert_array_equal(again[name].train_D, phase.train_D)
        np.testing.assert_array_equal(again[name].epoch_loss, phase.epoch_loss)
        assert again[name].test_acc == phase.test_acc
    other = guided_training(*data, SETTINGS, seed=2)
    assert not np.array_equal(other["converged"].train_D[0], converged.train_D[0])


def test_a_continuation_without_dropout_is_uninterrupted_training() -> None:
    data = tiny_images()
    phases = guided_training(*data, SETTINGS, seed=1)
    end = int(phases["converged"].epochs[-1])
    assert end < SETTINGS.max_epochs  # the threshold stopped the first phase
    straight = replace(SETTINGS, converge_loss=-1.0, max_epochs=end + SETTINGS.phase_epochs, dropouts=())
    uninterrupted = guided_training(*data, straight, seed=1)["converged"]
    np.testing.assert_allclose(uninterrupted.train_D[-1], phases["dropout_0"].train_D[-1], rtol=1e-6)
    np.testing.assert_allclose(uninterrupted.epoch_loss[end:], phases["dropout_0"].epoch_loss, rtol=1e-6)

"""Paper 1's claims read off results: each criterion decides in both directions, and the page renders."""

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from featdyn.claims import (
    accuracy_deltas,
    accuracy_table,
    anisotropy_claim,
    claims_markdown,
    consistency_collapse_claim,
    drift_claim,
    forgetting_claim,
    freezing_claim,
    memory_window_claim,
    paper1_claims,
    reinit_claim,
    transferability_claim,
)
from featdyn.composite_results import BandResult
from featdyn.dynamics_results import Drift

EPOCHS = np.array([0, 5, 10, 15, 20])
WINDOW = 3


def band(accuracy_at: Callable[[int, int], float]) -> BandResult:
    """A band whose accuracy at (s, t) is accuracy_at(s_epoch, t_epoch); other metrics are unused."""
    values = np.full((2 * WINDOW + 1, len(EPOCHS)), np.nan)
    for t, t_epoch in enumerate(EPOCHS):
        for k in range(-WINDOW, WINDOW + 1):
            if 0 <= t + k < len(EPOCHS):
                values[k + WINDOW, t] = accuracy_at(EPOCHS[t + k], t_epoch)
    empty = np.zeros((1, 2, WINDOW + 1, 1))
    return BandResult(EPOCHS, WINDOW, values, values, values, values, values, EPOCHS[-1:], empty, empty)


def memory(windows: dict[tuple[str, int], list[int]]) -> pd.DataFrame:
    rows = [
        {"run": run, "depth": depth, "epoch": e, "memory_window": w, "censored": w == e}
        for (run, depth), series in windows.items()
        for e, w in zip(EPOCHS, series)
    ]
    return pd.DataFrame(rows)


def test_accuracy_deltas_are_relative_to_the_diagonal():
    b = band(lambda s, t: 0.9 - 0.01 * abs(s - t))
    gaps, deltas = accuracy_deltas(b, 4, -1)
    assert gaps.tolist() == [5, 10, 15]
    np.testing.assert_allclose(deltas, [-0.05, -0.10, -0.15])
    gaps, deltas = accuracy_deltas(b, 1, +1)  # t = 5: s = 10, 15, 20
    assert gaps.tolist() == [5, 10, 15]


def test_memory_window_widening_saturation_and_narrowing():
    claim = memory_window_claim(
        memory(
            {
                ("widens", 1): [0, 5, 5, 10, 10],
                ("saturated", 1): [0, 5, 10, 15, 20],
                ("narrows", 1): [0, 5, 5, 0, 0],
            }
        )
    )
    holds = dict(zip(claim.table["run"], claim.table["holds"]))
    assert holds == {"widens": True, "saturated": None, "narrows": False}
    assert claim.verdict == "holds in 1 of 2 (1 undecided)"


@pytest.mark.parametrize("slope, holds", [(0.01, True), (-0.01, False)])
def test_forgetting_decides_by_the_sign_of_the_decay(slope, holds):
    claim = forgetting_claim([({"run": "r"}, band(lambda s, t: 0.9 - slope * abs(s - t)))])
    assert claim.table["holds"].tolist() == [holds]
    assert claim.table["t"].tolist() == [20]


def test_a_flat_memory_side_leaves_forgetting_undecided():
    claim = forgetting_claim([({"run": "r"}, band(lambda s, t: 0.9))])
    assert claim.table["holds"].tolist() == [None]
    assert claim.verdict == "undecided"


@pytest.mark.parametrize("later_is_better, holds", [(True, True), (False, False)])
def test_transferability_reads_later_shallow_features_at_mid_training(later_is_better, holds):
    sign = 1 if later_is_better else -1
    claim = transferability_claim([({"run": "r"}, band(lambda s, t: 0.8 + sign * 0.001 * (s - t)))])
    assert claim.table["t"].tolist() == [10]
    assert claim.table["holds"].tolist() == [holds]


def test_consistency_collapse_needs_a_lower_noisy_mean_and_a_small_p():
    welch = pd.DataFrame(
        {
            "pair": ["a", "a", "a"],
            "eval_set": ["test"] * 3,
            "depth": [1, 2, 3],
            "mean_clean": [0.9, 0.9, 0.8],
            "mean_noisy": [0.7, 0.7, 0.9],
            "p": [1e-6, 0.3, 1e-6],
            "hedges_g": [0.8, 0.1, -0.5],
        }
    )
    assert consistency_collapse_claim(welch).table["holds"].tolist() == [True, False, False]


def test_anisotropy_is_the_bootstrap_rejecting():
    isotropy = pd.DataFrame(
        {
            "run": ["r", "r"],
            "epoch": [1, 2],
            "depth": [1, 1],
            "M": [50, 50],
            "p": [16, 16],
            "effective_rank": [2.0, 15.0],
            "top_share_1": [0.6, 0.07],
            "bootstrap_p": [0.001, 0.4],
            "john_p": [1e-9, 0.5],
        }
    )
    assert anisotropy_claim(isotropy).table["holds"].tolist() == [True, False]


def test_drift_reads_the_shallow_stages_at_the_oldest_remembered_epoch():
    drift = Drift(
        epochs=EPOCHS,
        parameter_drift=np.array(
            [[0.5, 0.9, 1.0], [0.4, 0.8, 0.9], [0.3, 0.6, 0.7], [0.1, 0.3, 0.4], [0, 0, 0]]
        ),
        depths=np.array([2]),
        feature_drift=np.array([[0.9], [0.7], [0.5], [0.2], [0.0]]),
    )
    claim = drift_claim({"r": drift}, memory({("r", 2): [0, 5, 5, 5, 10]}))
    row = claim.table.iloc[0]
    assert row["epoch T − W"] == 10  # T = 20, W(T) = 10
    assert row["shallow parameter drift"] == pytest.approx(0.45)  # stages 1-2 at epoch 10
    assert row["feature drift"] == pytest.approx(0.5)
    assert claim.verdict == "numbers only"


def metrics(final_acc: float, first_epoch: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"epoch": [first_epoch, first_epoch + 1], "test_acc": [0.5, final_acc]})


def test_freezing_must_lower_accuracy_beyond_two_standard_errors():
    continuations = {"r": {0: metrics(0.80), 1: metrics(0.78), 2: metrics(0.81), 3: metrics(0.70)}}
    claim = freezing_claim(continuations, {"r": 1000})
    np.testing.assert_allclose(claim.table["Δ"], [-0.02, 0.01, -0.10])
    se = np.sqrt((0.78 * 0.22 + 0.8 * 0.2) / 1000)  # 0.0183: a drop of 0.02 is within noise
    assert claim.table["2 SE"].iloc[0] == pytest.approx(2 * se)
    assert claim.table["holds"].tolist() == [False, False, True]
    assert freezing_claim(continuations, {"r": 100_000}).table["holds"].tolist() == [True, False, True]


def test_reinit_holds_when_mce_rises_and_is_undecided_without_corruptions():
    reinit = pd.DataFrame(
        {
            "run": ["r"] * 3 + ["s"] * 2,
            "network": ["baseline", "reinit_d1", "reinit_d2", "baseline", "reinit_d1"],
            "clean_error": [10.0, 12.0, 11.0, 20.0, 25.0],
            "mce": [30.0, 35.0, 28.0, np.nan, np.nan],
        }
    )
    assert reinit_claim(reinit).table["holds"].tolist() == [True, False, None]


def test_the_page_lists_every_claim_with_its_verdict_and_criterion():
    b = band(lambda s, t: 0.9 - 0.01 * abs(s - t))
    claims = paper1_claims(
        memory({("r", 1): [0, 5, 5, 10, 10]}),
        [({"run": "r", "eval_set": "test", "depth": 1}, b)],
        drifts={},
        continuations={"r": {0: metrics(0.8), 1: metrics(0.7)}},
        test_sizes={"r": 1000},
    )
    text = claims_markdown(
        accuracy_table(
            {"r": pd.DataFrame({"epoch": [1, 2], "train_acc": [0.5, 0.9], "test_acc": [0.5, 0.8]})}
        ),
        claims,
    )
    for claim in claims:
        assert f"| {claim.name} | {claim.verdict} |" in text
        assert f"Criterion: {claim.criterion}." in text
    assert "| r | 2 | 0.900 | 0.800 | 0.800 |" in text
    assert "_nothing to read" in text  # the drift claim without drift results
    assert len(claims) == 5  # no Table 1, anisotropy or mCE without their tables

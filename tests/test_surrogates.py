"""Generalization surrogates (docs/definitions.md §12): MMD², permutation tests, sliced W2, class sets,
the table, the stage and the correlations."""

from __future__ import annotations

import math

import numpy as np
import ot
import pandas as pd
import pytest
import torch
from helpers import tiny_arrays
from scipy import stats

from featdyn.checkpoints import CheckpointStore
from featdyn.reduction import reduce_features
from featdyn.surrogates import (
    SurrogateSettings,
    class_gaps,
    class_subsets,
    input_groups,
    median_heuristic,
    mmd2_for_assignments,
    mmd2_unbiased,
    mmd_test,
    one_epoch_per_input,
    permutation_assignments,
    permutation_pvalues,
    random_directions,
    run_surrogates,
    same_group_pairs,
    sliced_wasserstein2,
    spearman_table,
    surrogate_correlations,
    surrogate_features,
    surrogate_stage,
    wasserstein2_squared_1d,
    window_epochs,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian(rng: np.random.Generator, n: int, p: int, shift: float = 0.0) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal((n, p)) + shift)


# --- MMD² ------------------------------------------------------------------------------------------


def numpy_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Gretton et al. (2012), Eq. 3, as a literal double loop."""

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return math.exp(-float(np.sum((u - v) ** 2)) / (2 * sigma**2))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("block_size", [3, 1024])
def test_mmd2_equals_the_double_loop(block_size: int) -> None:
    rng = np.random.default_rng(0)
    x, y = gaussian(rng, 9, 3), gaussian(rng, 6, 3, shift=0.7)
    sigmas = [0.5, 1.3, 4.0]
    got = mmd2_unbiased(x, y, sigmas, block_size=block_size).numpy()
    expected = [numpy_mmd2(x.numpy(), y.numpy(), s) for s in sigmas]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def numpy_grouped_mmd2(x: np.ndarray, groups: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """MMD² with the within-x mean over pairs of rows from different groups only (double loop)."""

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return math.exp(-float(np.sum((u - v) ** 2)) / (2 * sigma**2))

    pairs = [(i, j) for i in range(len(x)) for j in range(len(x)) if groups[i] != groups[j]]
    xx = sum(k(x[i], x[j]) for i, j in pairs) / len(pairs)
    n = len(y)
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(u, v) for u in x for v in y) / (len(x) * n)
    return xx + yy - 2 * xy


def test_same_group_pairs() -> None:
    groups = torch.tensor([2, 0, 2, 1, 2, 0])
    first, second = same_group_pairs(groups)
    got = sorted(zip(first.tolist(), second.tolist()))
    expected = sorted((i, j) for i in range(6) for j in range(6) if i != j and groups[i] == groups[j])
    assert got == expected


def test_grouped_mmd2_leaves_out_the_pairs_of_one_input() -> None:
    rng = np.random.default_rng(10)
    x, y = gaussian(rng, 12, 3), gaussian(rng, 5, 3, shift=0.4)
    groups = input_groups(12, 4)  # epoch-major: 3 epochs of 4 inputs
    np.testing.assert_array_equal(groups.numpy(), [0, 1, 2, 3] * 3)
    got = mmd2_unbiased(x, y, [0.8, 2.0], block_size=5, x_groups=groups).numpy()
    expected = [numpy_grouped_mmd2(x.numpy(), groups.numpy(), y.numpy(), s) for s in (0.8, 2.0)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    singletons = mmd2_unbiased(x, y, [0.8], x_groups=torch.arange(12))
    torch.testing.assert_close(singletons, mmd2_unbiased(x, y, [0.8]), rtol=1e-13, atol=1e-15)


def test_grouped_mmd2_is_unbiased_for_repeated_inputs_and_the_literal_one_is_not() -> None:
    """Under H0 the augmented rows (one input at 4 epochs, small jitter) and the test rows have one law;
    the grouped estimator averages to 0, the literal one (all distinct rows) is biased upwards."""
    rng = np.random.default_rng(11)
    grouped, literal = [], []
    for _ in range(150):
        inputs = rng.standard_normal((15, 2))
        augmented = torch.from_numpy(np.tile(inputs, (4, 1)) + 0.1 * rng.standard_normal((60, 2)))
        test = torch.from_numpy(rng.standard_normal((15, 2)) * math.sqrt(1.01))
        grouped.append(mmd2_unbiased(augmented, test, [1.0], x_groups=input_groups(60, 15)).item())
        literal.append(mmd2_unbiased(augmented, test, [1.0]).item())
    for values, biased in ((grouped, False), (literal, True)):
        z = np.mean(values) / (np.std(values, ddof=1) / math.sqrt(len(values)))
        assert (z > 4) if biased else (abs(z) < 3), z


def test_thinned_augmented_pvalues_are_uniform_under_the_null() -> None:
    """A_k-like rows (each input at 5 epochs) vs test rows of the same law: one epoch per input gives
    uniform p-values; a row-level permutation of all rows would reject far too often."""
    rng = np.random.default_rng(12)
    thinned, rows = [], []
    for i in range(200):
        inputs = rng.standard_normal((15, 2))
        augmented = torch.from_numpy((np.tile(inputs, (5, 1)) + 0.3 * rng.standard_normal((75, 2))) / 1.044)
        test = gaussian(rng, 15, 2)
        thinned.append(mmd_test(one_epoch_per_input(augmented, 15, i), test, 49, seed=i).p_value[0])
        rows.append(mmd_test(augmented, test, 49, seed=i).p_value[0])
    assert stats.kstest(thinned, "uniform").pvalue > 0.01
    assert np.mean(np.array(rows) <= 0.05) > 0.1


def test_pvalues_with_the_shared_bandwidth_are_uniform_under_the_null() -> None:
    """σ from the pooled A ∪ T of the class (more rows than either comparison holds, some of them
    dependent on P's rows) keeps both permutation tests calibrated: p_aug of the thinned A_k and
    p_plain of P_k against T_k, under a null where all three share one law."""
    rng = np.random.default_rng(13)
    thinned, plain = [], []
    for i in range(200):
        inputs = rng.standard_normal((15, 2))
        augmented = torch.from_numpy((np.tile(inputs, (4, 1)) + 0.3 * rng.standard_normal((60, 2))) / 1.044)
        test = gaussian(rng, 15, 2)
        median = median_heuristic(torch.cat([augmented, test]))
        sample = one_epoch_per_input(augmented, 15, i)
        thinned.append(mmd_test(sample, test, 49, seed=i, median=median).p_value[0])
        plain.append(mmd_test(augmented[-15:], test, 49, seed=i, median=median).p_value[0])
    for pvalues in (thinned, plain):
        assert stats.kstest(pvalues, "uniform").pvalue > 0.01
        assert np.mean(np.array(pvalues) <= 0.05) < 0.1


def test_one_epoch_per_input_keeps_each_input_once() -> None:
    augmented = torch.arange(3 * 5, dtype=torch.float64)[:, None]  # row value = epoch · 5 + input
    thinned = one_epoch_per_input(augmented, 5, seed=0)[:, 0].long()
    np.testing.assert_array_equal((thinned % 5).numpy(), np.arange(5))
    assert bool((thinned // 5 < 3).all())
    torch.testing.assert_close(one_epoch_per_input(augmented, 5, seed=0)[:, 0].long(), thinned)


def test_median_heuristic_is_numpys_median_of_pairwise_distances() -> None:
    rng = np.random.default_rng(1)
    for n in (5, 6):  # 10 pairs (even: mean of the two middle values) and 15 pairs (odd)
        z = rng.standard_normal((n, 4))
        distances = np.linalg.norm(z[:, None] - z[None], axis=-1)[np.triu_indices(n, 1)]
        assert median_heuristic(torch.from_numpy(z)) == pytest.approx(np.median(distances), rel=1e-14)


def test_mmd_test_uses_multiples_of_the_median() -> None:
    rng = np.random.default_rng(2)
    x, y = gaussian(rng, 8, 2), gaussian(rng, 7, 2)
    result = mmd_test(x, y, n_permutations=19, multipliers=(0.5, 1.0, 2.0))
    median = median_heuristic(torch.cat([x, y]))
    np.testing.assert_allclose(result.bandwidths, [median / 2, median, 2 * median])
    np.testing.assert_allclose(result.mmd2, mmd2_unbiased(x, y, result.bandwidths).numpy(), rtol=1e-12)
    assert result.null.shape == (3, 19) and result.p_value.shape == (3,)


def test_permutation_null_is_the_mmd2_of_the_permuted_splits() -> None:
    rng = np.random.default_rng(3)
    x, y = gaussian(rng, 6, 3), gaussian(rng, 4, 3)
    z = torch.cat([x, y])
    assignments = permutation_assignments(6, 4, 7, seed=5)
    assert assignments.shape == (10, 8)
    np.testing.assert_array_equal(assignments.sum(0).numpy(), 6)
    np.testing.assert_array_equal(assignments[:, 0].numpy(), [1] * 6 + [0] * 4)
    values = mmd2_for_assignments(z, assignments, [1.1], block_size=4)[0]
    for b in range(8):
        first = assignments[:, b].bool()
        direct = numpy_mmd2(z[first].numpy(), z[~first].numpy(), 1.1)
        assert values[b].item() == pytest.approx(direct, rel=1e-11, abs=1e-14)
    torch.testing.assert_close(assignments, permutation_assignments(6, 4, 7, seed=5), rtol=0, atol=0)
    assert not torch.equal(assignments, permutation_assignments(6, 4, 7, seed=6))


def test_permutation_pvalue_formula_counts_ties() -> None:
    observed = torch.tensor([2.0, 0.5], dtype=torch.float64)
    null = torch.tensor([[1.0, 2.0, 3.0, 0.0], [0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    np.testing.assert_allclose(permutation_pvalues(observed, null).numpy(), [3 / 5, 1 / 5])
    # a tie up to rounding still counts
    np.testing.assert_allclose(permutation_pvalues(observed, null + 1e-15).numpy(), [3 / 5, 1 / 5])


def test_permutation_pvalues_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(4)
    pvalues = np.array(
        [
            mmd_test(gaussian(rng, 12, 2), gaussian(rng, 9, 2), n_permutations=99, seed=i).p_value[0]
            for i in range(300)
        ]
    )
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    assert np.mean(pvalues <= 0.05) < 0.1


def test_a_shifted_pair_is_rejected() -> None:
    rng = np.random.default_rng(5)
    result = mmd_test(gaussian(rng, 40, 3), gaussian(rng, 30, 3, shift=1.0), n_permutations=199)
    assert result.p_value[0] == pytest.approx(1 / 200)
    assert result.mmd2[0] > result.null[0].max()


# --- sliced Wasserstein-2 -----------------------------------------------------------------------------


def replicated_w2_squared(u: np.ndarray, v: np.ndarray) -> float:
    """Exact 1-D W2² of uniform empirical measures: replicate both to lcm(m, n) atoms, pair sorted."""
    size = math.lcm(len(u), len(v))
    a = np.repeat(np.sort(u), size // len(u))
    b = np.repeat(np.sort(v), size // len(v))
    return float(np.mean((a - b) ** 2))


@pytest.mark.parametrize(("m", "n"), [(7, 5), (6, 4), (8, 8), (1, 3)])
def test_one_dimensional_w2_is_exact(m: int, n: int) -> None:
    rng = np.random.default_rng(m * 10 + n)
    u, v = rng.standard_normal((3, m)), rng.standard_normal((3, n)) * 2 + 1
    got = wasserstein2_squared_1d(torch.from_numpy(u), torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(got, [replicated_w2_squared(a, b) for a, b in zip(u, v)], rtol=1e-12)
    pot = ot.wasserstein_1d(u.T, v.T, p=2)  # POT batches over the trailing axis
    np.testing.assert_allclose(got, pot, rtol=1e-12)


def test_sliced_w2_of_one_dimensional_samples_is_w2() -> None:
    rng = np.random.default_rng(6)
    u, v = rng.standard_normal(11), rng.standard_normal(4) + 3.0
    got = sliced_wasserstein2(torch.from_numpy(u[:, None]), torch.from_numpy(v[:, None]), n_projections=5)
    assert got == pytest.approx(math.sqrt(replicated_w2_squared(u, v)), rel=1e-12)
    assert sliced_wasserstein2(torch.from_numpy(u[:, None]), torch.from_numpy(u[:, None] + 2.0)) == (
        pytest.approx(2.0, rel=1e-12)
    )


def test_sliced_w2_matches_pot() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((17, 5)) + 0.3
    directions = random_directions(5, 64, seed=3)
    np.testing.assert_allclose(directions.norm(dim=0).numpy(), 1.0, rtol=1e-14)
    got = sliced_wasserstein2(torch.from_numpy(x), torch.from_numpy(y), directions=directions)
    expected = ot.sliced_wasserstein_distance(x, y, projections=directions.numpy(), p=2)
    assert got == pytest.approx(expected, rel=1e-12)
    # seeded directions: the same seed gives the same value, and many directions agree with POT's own
    assert got == sliced_wasserstein2(torch.from_numpy(x), torch.from_numpy(y), n_projections=64, seed=3)
    many = sliced_wasserstein2(torch.from_numpy(x), torch.from_numpy(y), n_projections=4000, seed=0)
    assert many == pytest.approx(ot.sliced_wasserstein_distance(x, y, n_projections=4000, seed=0), rel=0.03)


# --- sets from a run's checkpoints --------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tiny_store_path) -> CheckpointStore:
    return CheckpointStore(tiny_store_path)


def test_window_epochs() -> None:
    assert window_epochs([0, 2, 4, 6, 8], 6, 3) == [4, 6]
    assert window_epochs([0, 2, 4, 6, 8], 6, 0) == [6]
    assert window_epochs([0, 2, 4, 6, 8], 4, 100) == [0, 2, 4]
    with pytest.raises(KeyError):
        window_epochs([0, 2, 4], 3, 1)


def test_class_subsets_are_seeded_per_class(tiny_data) -> None:
    y_train, y_test = tiny_data.y_train.numpy(), tiny_data.y_test.numpy()
    subsets = class_subsets(y_train, y_test, 10, 5, seed=0)
    np.testing.assert_array_equal(y_train[subsets.train], subsets.train_classes)
    np.testing.assert_array_equal(y_test[subsets.test], subsets.test_classes)
    counts = np.bincount(y_train, minlength=10)
    np.testing.assert_array_equal(np.bincount(subsets.train_classes, minlength=10), np.minimum(counts, 5))
    assert len(np.unique(subsets.train)) == len(subsets.train)
    again = class_subsets(y_train, y_test, 10, 5, seed=0)
    np.testing.assert_array_equal(again.train, subsets.train)
    assert not np.array_equal(class_subsets(y_train, y_test, 10, 5, seed=1).train, subsets.train)
    everything = class_subsets(y_train, y_test, 10, None, seed=0)
    assert sorted(everything.train) == list(range(len(y_train)))


@pytest.fixture(scope="module")
def features(store, tiny_data):
    return surrogate_features(
        store,
        depth=2,
        epochs=[1, 2, 3, 4],
        x_train=tiny_data.x_train,
        y_train=tiny_data.y_train.numpy(),
        x_test=tiny_data.x_test,
        y_test=tiny_data.y_test.numpy(),
        classes=10,
        n_per_class=6,
        seed=0,
        batch_size=7,
    )


def test_features_are_the_reduced_shallow_parts_of_each_checkpoint(store, tiny_data, features) -> None:
    assert features.reduction["pooled"] and features.reduction["p"] == 16
    for position, epoch in enumerate(features.epochs):
        with torch.no_grad():
            h = store.model_at(epoch)(tiny_data.x_train[features.subsets.train], 0, 2)
        torch.testing.assert_close(
            features.train[position], reduce_features(h.double()), rtol=1e-6, atol=1e-6
        )


def test_class_sets(features) -> None:
    k, t = 3, 4
    augmented, plain, test = features.class_sets(k, t, window=2)
    rows = torch.from_numpy(features.subsets.train_classes == k)
    test_rows = torch.from_numpy(features.subsets.test_classes == k)
    expected = torch.cat([features.train[features.position(e), rows] for e in (2, 3, 4)])
    torch.testing.assert_close(augmented, expected, rtol=0, atol=0)
    torch.testing.assert_close(plain, features.train[features.position(t), rows], rtol=0, atol=0)
    torch.testing.assert_close(test, features.test[features.position(t), test_rows], rtol=0, atol=0)
    same, plain_again, _ = features.class_sets(k, t, window=0)
    torch.testing.assert_close(same, plain_again, rtol=0, atol=0)


def test_class_gaps_match_per_class_evaluation(store, tiny_data) -> None:
    model = store.model_at(4)
    gaps = class_gaps(model, tiny_data.x_train, tiny_data.y_train, tiny_data.x_test, tiny_data.y_test, 10)
    with torch.no_grad():
        train_logits, test_logits = model(tiny_data.x_train).double(), model(tiny_data.x_test).double()
    for k in (0, 7):
        tr, te = tiny_data.y_train == k, tiny_data.y_test == k
        train_acc = (train_logits[tr].argmax(1) == k).double().mean().item()
        test_acc = (test_logits[te].argmax(1) == k).double().mean().item()
        train_ce = torch.nn.functional.cross_entropy(train_logits[tr], tiny_data.y_train[tr]).item()
        test_ce = torch.nn.functional.cross_entropy(test_logits[te], tiny_data.y_test[te]).item()
        row = gaps.set_index("class").loc[k]
        assert row["acc_gap"] == pytest.approx(train_acc - test_acc, abs=1e-12)
        assert row["ce_gap"] == pytest.approx(test_ce - train_ce, rel=1e-9)


def test_settings_from_config_ignore_other_keys() -> None:
    settings = SurrogateSettings.from_config(
        {"bandwidth_multipliers": [0.5, 2], "n_permutations": 99, "depths": [1]}
    )
    assert settings.bandwidth_multipliers == (0.5, 2.0) and settings.n_permutations == 99
    assert settings.n_projections == SurrogateSettings().n_projections


def test_run_surrogates_table_and_spearman(store, tiny_data) -> None:
    settings = SurrogateSettings(
        n_per_class=6, n_permutations=19, n_projections=16, bandwidth_multipliers=(1.0, 2.0)
    )
    table, features = run_surrogates(
        store,
        1,
        [3, 4],
        [0, 2],
        tiny_data.x_train,
        tiny_data.y_train,
        tiny_data.x_test,
        tiny_data.y_test,
        10,
        settings,
    )
    assert features.epochs == [1, 2, 3, 4]
    assert len(table) == 2 * 2 * 10 * 2
    for column in ("depth", "epoch", "window", "class", "n_A", "n_P", "n_T", "mmd2_aug", "mmd2_plain"):
        assert column in table
    for column in ("p_aug", "p_plain", "sw2_aug", "sw2_plain", "acc_gap", "ce_gap", "bandwidth"):
        assert column in table
    np.testing.assert_array_equal(table["n_A"], table["n_P"] * table["n_window_epochs"])
    at_zero = table[table["window"] == 0]
    for name in ("mmd2", "sw2", "p"):
        np.testing.assert_allclose(
            at_zero[f"{name}_aug"], at_zero[f"{name}_plain"], rtol=1e-12, atol=1e-14, err_msg=name
        )
    assert table["p_aug"].between(1 / 20, 1).all()
    # one row checked against the primitives
    row = table[(table["epoch"] == 4) & (table["window"] == 2) & (table["class"] == 5)].iloc[0]
    augmented, plain, test = features.class_sets(5, 4, 2)
    sigma = row["sigma_median"]  # the largest window's A ∪ T, shared by both comparisons and all W
    assert sigma == pytest.approx(median_heuristic(torch.cat([augmented, test])), rel=1e-14)
    per_class = table.groupby(["epoch", "class", "bandwidth"])
    for shared in ("sigma_median", "mmd2_plain", "p_plain", "sw2_plain"):
        assert (per_class[shared].nunique() == 1).all(), shared
    groups = input_groups(len(augmented), len(plain))
    expected = numpy_grouped_mmd2(augmented.numpy(), groups.numpy(), test.numpy(), sigma)
    assert row["mmd2_aug"] == pytest.approx(expected, rel=1e-10)
    assert row["sw2_aug"] == pytest.approx(
        ot.sliced_wasserstein_distance(
            augmented.numpy(), test.numpy(), projections=random_directions(16, 16, 0).numpy()
        ),
        rel=1e-12,
    )
    rho = spearman_table(table)
    assert len(rho) == 2 * 2 * 2 * 2 * 4 and set(rho["n"]) == {10}
    group = table[(table["epoch"] == 3) & (table["window"] == 2) & (table["bandwidth"] == 1.0)]
    pick = rho[(rho["epoch"] == 3) & (rho["window"] == 2) & (rho["bandwidth"] == 1.0)]
    pick = pick[(pick["gap"] == "acc_gap") & (pick["surrogate"] == "sw2_aug")].iloc[0]
    expected = stats.spearmanr(group["acc_gap"], group["sw2_aug"])
    assert pick["rho"] == pytest.approx(expected.statistic, nan_ok=True)
    assert isinstance(rho, pd.DataFrame)


def test_surrogate_stage_uses_the_runs_own_training_labels(tiny_store_path, tiny_data) -> None:
    store = CheckpointStore(tiny_store_path)
    noisy = np.random.default_rng(0).permutation(store.labels["train"])
    store.labels = {**store.labels, "train": noisy}
    settings = SurrogateSettings(n_per_class=5, n_permutations=9, n_projections=4)
    table = surrogate_stage(store, tiny_arrays(), 1, [4], [0, 1], settings)
    assert len(table) == 10 * 2 and (table["seconds"] > 0).all()
    expected = class_gaps(
        store.model_at(4), tiny_data.x_train, torch.from_numpy(noisy), tiny_data.x_test, tiny_data.y_test, 10
    ).set_index("class")
    got = table[table["window"] == 0].set_index("class")
    np.testing.assert_allclose(got["train_acc"], expected["train_acc"], rtol=1e-12)
    np.testing.assert_allclose(got["test_acc"], expected["test_acc"], rtol=1e-12)


def test_surrogate_correlations_pool_classes_epochs_and_runs() -> None:
    rng = np.random.default_rng(14)
    rows = [
        {"run": run, "depth": 1, "epoch": t, "window": w, "bandwidth": 1.0, "class": k}
        for run in ("a", "b")
        for t in (2, 4, 6)
        for w in (0, 2)
        for k in range(5)
    ]
    table = pd.DataFrame(rows)
    for column in ("acc_gap", "ce_gap", "mmd2_aug", "mmd2_plain", "sw2_aug", "sw2_plain"):
        table[column] = rng.standard_normal(len(table))
    rho = surrogate_correlations(table)
    assert set(rho["scope"]) == {"run", "all", "epoch"}
    counts = rho.groupby("scope")["n"].first().to_dict()
    assert counts == {"run": 15, "all": 30, "epoch": 5}
    pick = rho[(rho["scope"] == "run") & (rho["run"] == "b") & (rho["window"] == 2)]
    pick = pick[(pick["gap"] == "ce_gap") & (pick["surrogate"] == "mmd2_aug")]
    group = table[(table["run"] == "b") & (table["window"] == 2)]
    assert pick["rho"].item() == pytest.approx(stats.spearmanr(group["ce_gap"], group["mmd2_aug"]).statistic)
    overall = rho[(rho["scope"] == "all") & (rho["window"] == 0)]
    overall = overall[(overall["gap"] == "acc_gap") & (overall["surrogate"] == "sw2_plain")]
    at_zero = table[table["window"] == 0]
    expected = stats.spearmanr(at_zero["acc_gap"], at_zero["sw2_plain"]).statistic
    assert overall["run"].item() == "all" and overall["rho"].item() == pytest.approx(expected)

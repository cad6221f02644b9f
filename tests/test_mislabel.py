import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import log_softmax
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from featdyn.checkpoints import CheckpointStore
from featdyn.data import mislabelled, noisy_labels, realised_wrong_share
from featdyn.mislabel import (
    auroc_ap,
    bootstrap_auroc_ap,
    dynamics_scores,
    evaluation_table,
    given_label_consistency,
    history_from_logits,
    history_from_store,
    keep_mask,
    most_suspect,
    oracle_drop,
    pr_points,
    roc_points,
    run_scores,
    sample_table,
    suspicion,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# --- label noise ----------------------------------------------------------------------------------


def old_noisy_labels(y, fraction, classes, seed):
    """The implementation before label-noise kinds existed (commit ada91e1), kept verbatim."""
    rng = np.random.default_rng(seed)
    n_noisy = int(round(fraction * len(y)))
    mask = np.zeros(len(y), dtype=bool)
    mask[rng.choice(len(y), size=n_noisy, replace=False)] = True
    y_noisy = y.copy()
    y_noisy[mask] = rng.integers(0, classes, size=n_noisy)
    return y_noisy, mask


@pytest.mark.parametrize("fraction, classes, seed", [(0.4, 10, 0), (0.2, 100, 7), (0.0, 10, 1), (1.0, 3, 5)])
def test_uniform_noise_is_the_old_function(fraction, classes, seed):
    y = np.random.default_rng(99).integers(0, classes, 997)
    old = old_noisy_labels(y, fraction, classes, seed)
    for new in (
        noisy_labels(y, fraction, classes, seed),
        noisy_labels(y, fraction, classes, seed, "uniform"),
    ):
        assert np.array_equal(new[0], old[0]) and np.array_equal(new[1], old[1])


@pytest.mark.parametrize("n, rate", [(1001, 0.3), (10, 0.25), (5000, 0.4), (7, 1.0)])
def test_symmetric_noise_changes_exactly_the_chosen_labels(n, rate):
    y = np.random.default_rng(1).integers(0, 10, n)
    labels, mask = noisy_labels(y, rate, 10, seed=3, kind="symmetric")
    assert mask.sum() == round(rate * n)
    assert np.all(labels[mask] != y[mask]) and np.array_equal(labels[~mask], y[~mask])
    assert np.array_equal(mislabelled(labels, y), mask)
    assert realised_wrong_share(labels, y) == pytest.approx(round(rate * n) / n)
    # the same samples are chosen as for uniform noise with the same seed
    assert np.array_equal(mask, noisy_labels(y, rate, 10, seed=3)[1])


def test_symmetric_noise_is_uniform_over_the_other_classes_and_uniform_keeps_some():
    from scipy.stats import chisquare

    y = np.random.default_rng(2).integers(0, 5, 20000)
    labels, mask = noisy_labels(y, 0.5, 5, seed=0, kind="symmetric")
    shift = (labels[mask] - y[mask]) % 5
    assert chisquare(np.bincount(shift, minlength=5)[1:]).pvalue > 1e-3
    uniform, _ = noisy_labels(y, 0.5, 5, seed=0)
    # realised wrong share of uniform noise ≈ rate (K−1)/K = 0.4; binomial sd ≈ 0.0035
    assert realised_wrong_share(uniform, y) == pytest.approx(0.4, abs=0.015)
    with pytest.raises(ValueError, match="label noise kind"):
        noisy_labels(y, 0.5, 5, seed=0, kind="pair")


# --- toy histories, hand-computed scores ----------------------------------------------------------

A, B, C = [0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]
SURE2 = [0.125, 0.125, 0.75]
TOY_PROBABILITIES = np.array(
    [  # epochs × samples × classes; labels (0, 1, 2)
        [A, A, A],
        [B, A, SURE2],
        [A, A, SURE2],
        [C, A, SURE2],
        [A, A, SURE2],
    ]
)
TOY_LABELS = np.array([0, 1, 2])


def toy_history():
    return history_from_logits(np.log(TOY_PROBABILITIES), TOY_LABELS, epochs=[1, 2, 3, 4, 5])


def test_toy_history_statistics():
    h = toy_history()
    ln2 = math.log(2)
    np.testing.assert_allclose(h.probability[:, 0], [0.5, 0.25, 0.5, 0.25, 0.5])
    np.testing.assert_allclose(h.margin[:, 0], [ln2, -ln2, ln2, -ln2, ln2])
    np.testing.assert_allclose(h.margin[:, 2], [-ln2] + [math.log(6)] * 4)
    np.testing.assert_allclose(h.loss[:, 1], [math.log(4)] * 5)
    assert h.correct[:, 0].tolist() == [True, False, True, False, True]
    assert not h.correct[:, 1].any() and h.correct[:, 2].tolist() == [False] + [True] * 4
    assert h.probability.dtype == np.float64 and h.probability.shape == (5, 3)


def test_toy_scores_against_hand_computed_values():
    ln2, ln6 = math.log(2), math.log(6)
    s = dynamics_scores(toy_history(), reference_epochs=[5, 2])
    np.testing.assert_allclose(s["confidence"], [0.4, 0.25, 0.65])
    # population std (ddof = 0): sqrt(0.075 / 5), 0, sqrt(0.2 / 5)
    np.testing.assert_allclose(s["variability"], [math.sqrt(0.015), 0.0, 0.2], atol=1e-15)
    np.testing.assert_allclose(s["aum"], [ln2 / 5, -ln2, (-ln2 + 4 * ln6) / 5])
    # sample 2 goes wrong → right once: that is learning, not forgetting
    assert s["forgetting"].tolist() == [2, 0, 0]
    assert s["never_learned"].tolist() == [False, True, False]
    np.testing.assert_allclose(s["loss_t5"], [ln2, math.log(4), -math.log(0.75)])
    np.testing.assert_allclose(s["loss_t2"], [math.log(4), math.log(4), -math.log(0.75)])


def test_suspicion_orientation_and_never_learned_rank():
    s = suspicion(dynamics_scores(toy_history()))
    assert "never_learned" not in s
    np.testing.assert_allclose(s["confidence"], [-0.4, -0.25, -0.65])
    np.testing.assert_allclose(s["aum"], -dynamics_scores(toy_history())["aum"])
    assert s["forgetting"].tolist() == [2, 3, 0]  # never learned ranks above the largest count
    c = suspicion({"consistency_d2_t5_w3": np.array([1.0, 0.25])})
    assert c["consistency_d2_t5_w3"].tolist() == [-1.0, -0.25]
    with pytest.raises(KeyError):
        suspicion({"entropy": np.zeros(2)})


# --- AUROC, AP, bootstrap, curves -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_auroc_and_ap_equal_sklearn_on_tied_scores(seed):
    rng = np.random.default_rng(seed)
    target = rng.random(300) < 0.3
    score = rng.integers(0, 6, 300) + target * rng.integers(0, 3, 300)  # ties within and across classes
    assert len(np.intersect1d(score[target], score[~target])) >= 4
    auroc, ap = auroc_ap(score, target)
    assert auroc == pytest.approx(roc_auc_score(target, score), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(target, score), abs=1e-12)


def test_curves_equal_sklearn():
    rng = np.random.default_rng(5)
    target = rng.random(200) < 0.4
    score = (rng.integers(0, 8, 200) + target * rng.integers(0, 3, 200)) / 2  # ties across classes
    fpr, tpr, thresholds = roc_curve(target, score, drop_intermediate=False)
    roc = roc_points(score, target)
    np.testing.assert_allclose(roc.fpr, fpr)
    np.testing.assert_allclose(roc.tpr, tpr)
    np.testing.assert_allclose(roc.threshold, thresholds)
    precision, recall, pr_thresholds = precision_recall_curve(target, score)
    pr = pr_points(score, target)
    np.testing.assert_allclose(pr.precision, precision)
    np.testing.assert_allclose(pr.recall, recall)
    np.testing.assert_allclose(pr.threshold[:-1], pr_thresholds)


def test_perfect_and_random_scores():
    rng = np.random.default_rng(0)
    target = rng.random(20000) < 0.3
    assert auroc_ap(target.astype(float), target) == (1.0, 1.0)
    auroc, ap = auroc_ap(rng.random(20000), target)
    # null sd of the AUROC: sqrt((n0 + n1 + 1) / (12 n0 n1)) ≈ 0.0045 here; 0.02 is > 4 sd
    assert auroc == pytest.approx(0.5, abs=0.02)
    assert ap == pytest.approx(target.mean(), abs=0.02)  # a random ranking's AP is the prevalence


def test_bootstrap_equals_a_loop_of_sklearn_calls_on_the_same_draws():
    rng = np.random.default_rng(3)
    target = rng.random(150) < 0.35
    score = rng.integers(0, 10, 150) + 2 * target
    result = bootstrap_auroc_ap(score, target, n_boot=60, seed=11)
    draws = np.random.default_rng(11).integers(0, 150, size=(60, 150))
    aurocs = [roc_auc_score(target[d], score[d]) for d in draws]
    aps = [average_precision_score(target[d], score[d]) for d in draws]
    np.testing.assert_allclose([result["auroc_lo"], result["auroc_hi"]], np.percentile(aurocs, [2.5, 97.5]))
    np.testing.assert_allclose([result["ap_lo"], result["ap_hi"]], np.percentile(aps, [2.5, 97.5]))
    # chunking the draws changes nothing (one generator stream)
    chunked = bootstrap_auroc_ap(score, target, n_boot=60, seed=11, budget=150 * 7)
    assert chunked == pytest.approx(result, abs=0)


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n():
    def interval(n):
        rng = np.random.default_rng(n)
        target = rng.random(n) < 0.3
        r = bootstrap_auroc_ap(target + rng.normal(0, 1, n), target, n_boot=400, seed=0)
        assert r["auroc_lo"] <= r["auroc"] <= r["auroc_hi"] and r["ap_lo"] <= r["ap"] <= r["ap_hi"]
        return r["auroc_hi"] - r["auroc_lo"], r["ap_hi"] - r["ap_lo"]

    small, large = interval(200), interval(3200)
    # widths scale as 1/sqrt(n): a 16-fold n gives about a quarter
    assert large[0] < small[0] / 2.5 and large[1] < small[1] / 2.5


def test_bootstrap_interval_covers_the_null_auroc_at_its_level():
    """200 data sets with a random score: the 95% interval should cover AUROC = 0.5 about 95% of the
    time; binomial sd at 200 repetitions ≈ 0.015, so [0.88, 0.99] is a > 4 sd band."""
    rng = np.random.default_rng(1)
    covered = []
    for seed in range(200):
        target, score = rng.random(200) < 0.5, rng.random(200)
        r = bootstrap_auroc_ap(score, target, n_boot=300, seed=seed)
        covered.append(r["auroc_lo"] <= 0.5 <= r["auroc_hi"])
    assert 0.88 <= np.mean(covered) <= 0.99


def test_evaluation_table():
    rng = np.random.default_rng(0)
    target = rng.random(400) < 0.2
    scores = {"good": target + rng.normal(0, 0.5, 400), "noise": rng.random(400)}
    table = evaluation_table(scores, target, n_boot=200, seed=4)
    assert list(table.columns) == [
        "score",
        "auroc",
        "auroc_lo",
        "auroc_hi",
        "ap",
        "ap_lo",
        "ap_hi",
        "n",
        "n_noisy",
    ]
    assert table.score.tolist() == ["good", "noise"]
    assert (table.n == 400).all() and (table.n_noisy == target.sum()).all()
    row = bootstrap_auroc_ap(scores["good"], target, n_boot=200, seed=4)
    assert table.iloc[0][list(row)].to_dict() == pytest.approx(row)
    assert table.auroc[0] > 0.9 and table.auroc_lo[1] < 0.5 < table.auroc_hi[1]


# --- selection and per-run table --------------------------------------------------------------------


def test_selection_keep_mask_and_oracle():
    s = np.array([1.0, 3.0, 3.0, 0.0, 2.0])
    assert most_suspect(s, 0.6).tolist() == [1, 2, 4]  # tie at 3.0: lower position first
    assert most_suspect(s[::-1], 0.4).tolist() == [2, 3]
    assert most_suspect(s, 0.0).tolist() == []
    assert keep_mask(5, most_suspect(s, 0.6)).tolist() == [True, False, False, True, False]
    assert oracle_drop(np.array([0, 1, 2, 3]), np.array([0, 2, 2, 1])).tolist() == [1, 3]
    with pytest.raises(ValueError, match="NaN"):
        most_suspect(np.array([np.nan, 1.0]), 0.5)


def test_sample_table():
    scores = dynamics_scores(toy_history())
    table = sample_table(
        np.array([7, 3, 9]), TOY_LABELS, np.array([0, 2, 2]), np.array([0, 1, 0], bool), scores
    )
    assert table.columns[:5].tolist() == ["sample", "given_label", "true_label", "noise", "mislabelled"]
    assert table.mislabelled.tolist() == [False, True, False]
    assert set(scores) <= set(table.columns) and len(table) == 3
    np.testing.assert_array_equal(table.aum, scores["aum"])


# --- histories and consistency from a stored run ------------------------------------------------------


@pytest.fixture(scope="module")
def store(tiny_store_path):
    return CheckpointStore(tiny_store_path)


@pytest.fixture(scope="module")
def train_set(tiny_data, store):
    """60 training samples and given labels with 30% symmetric noise (the run itself trained on clean)."""
    true = store.labels["train"][:60]
    given, _ = noisy_labels(true, 0.3, 10, seed=2, kind="symmetric")
    return tiny_data.x_train[:60], given, true


def test_history_from_store_equals_a_per_epoch_loop(store, train_set):
    x, given, _ = train_set
    history = history_from_store(store, x, given, epoch_chunk=2, batch_size=25)
    assert history.epochs.tolist() == store.epochs[1:]  # initialisation left out
    for row, epoch in enumerate(history.epochs):
        with torch.no_grad():
            logits = store.model_at(int(epoch))(x).double().numpy()
        log_p = log_softmax(logits, axis=1)[np.arange(60), given]
        others = logits.copy()
        others[np.arange(60), given] = -np.inf
        np.testing.assert_allclose(history.probability[row], np.exp(log_p), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(history.loss[row], -log_p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            history.margin[row], logits[np.arange(60), given] - others.max(1), rtol=1e-5, atol=1e-5
        )
        np.testing.assert_array_equal(history.prediction[row], logits.argmax(1))
        np.testing.assert_array_equal(history.correct[row], logits.argmax(1) == given)


def literal_consistency(store, x, given, depth, t, window):
    """The definition, one τ at a time with fresh modules."""
    with torch.no_grad():
        deep = store.model_at(t)
        taus = [e for e in store.epochs if t - window <= e <= t]
        hits = [
            deep(store.model_at(tau)(x, 0, depth), depth, None).argmax(1).numpy() == given for tau in taus
        ]
    return np.mean(hits, axis=0)


def test_consistency_matches_the_literal_loop_and_the_plain_network_at_w0(store, train_set):
    x, given, _ = train_set
    depths, refs, windows = [1, 3], [2, 4], [0, 1, 3, 10]
    c = given_label_consistency(store, x, given, depths, refs, windows, epoch_chunk=2, batch_size=25)
    assert c.values.shape == (2, 2, 4, 60)
    for i, depth in enumerate(depths):
        for j, t in enumerate(refs):
            with torch.no_grad():
                plain = store.model_at(t)(x).argmax(1).numpy() == given
            np.testing.assert_array_equal(c.values[i, j, 0], plain.astype(float))
            for k, w in enumerate(windows):
                np.testing.assert_allclose(
                    c.values[i, j, k], literal_consistency(store, x, given, depth, t, w), atol=1e-12
                )
    assert list(c.columns())[:2] == ["consistency_d1_t2_w0", "consistency_d1_t2_w1"]
    with pytest.raises(ValueError, match="reference epoch"):
        given_label_consistency(store, x, given, [1], [9], [0])
    with pytest.raises(ValueError, match="windows"):
        given_label_consistency(store, x, given, [1], [4], [-1])


def test_scores_of_a_run_detect_labels_the_network_did_not_learn(store, train_set):
    """The tiny run learned the true labels, so given labels that differ from them stand out."""
    x, given, true = train_set
    scores = run_scores(store, x, given, reference_epochs=[4], depths=[2], windows=[2], epoch_chunk=3)
    table = evaluation_table(suspicion(scores), mislabelled(given, true), n_boot=100)
    assert set(table.score) == {
        "loss_t4",
        "confidence",
        "variability",
        "aum",
        "forgetting",
        "consistency_d2_t4_w2",
    }
    good = table.set_index("score").loc[["loss_t4", "confidence", "aum", "consistency_d2_t4_w2"]]
    assert (good.auroc > 0.8).all(), good
    frame = sample_table(np.arange(60), given, true, given != true, scores)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 60

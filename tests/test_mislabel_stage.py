"""The mislabel stage (docs/definitions.md §11, §14): label-noise kinds in configured runs, the per-run
sample table, evaluation across runs, the drop selection, retraining without samples, and the config."""

import copy
import dataclasses
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_arrays, tiny_config, train_tiny

from featdyn.checkpoints import CheckpointStore
from featdyn.config import ConfigError, check_config, schema
from featdyn.data import noisy_labels, subset_indices, tensor_data, write_dataset
from featdyn.mislabel import (
    SAMPLE_COLUMNS,
    ScoreSettings,
    evaluate_runs,
    evaluation_table,
    retrain_drop,
    retrain_table,
    retrain_without,
    roc_points,
    score_names,
    score_run,
    suspicion,
    table_scores,
)
from featdyn.models import build_model
from featdyn.planning import mislabel_runs, mislabel_score_names, retrain_runs, retrain_settings
from featdyn.train import Recipe, TrainSpec, train_configured_run, train_run

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 40}


def configured_run(kind: str, epochs: int = 2) -> dict:
    return {
        "dataset": "tiny",
        "model": "mlp",
        "model_options": {},
        "recipe": "r",
        "label_noise": 0.4,
        "label_noise_kind": kind,
        "seed": 3,
        "epochs": epochs,
        "save_every": 1,
    }


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    write_dataset(tiny_arrays(), path, {"source": "synthetic"})
    return path


def train_configured(tmp_path, dataset_path, kind: str, epochs: int = 2) -> CheckpointStore:
    run = configured_run(kind, epochs)
    out = tmp_path / kind / "checkpoints.h5"
    train_configured_run(
        run,
        TrainSpec.from_config(run, RECIPE),
        dataset_path,
        out,
        tmp_path / kind / "state",
        "cpu",
        {"run": run},
        progress=False,
    )
    return CheckpointStore(out)


@pytest.fixture(scope="module")
def noisy_store(tmp_path_factory, dataset_path):
    return train_configured(tmp_path_factory.mktemp("runs"), dataset_path, "symmetric")


def states_equal(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# --- configured runs --------------------------------------------------------------------------------


def test_uniform_run_trains_exactly_as_before_and_records_the_truth(tmp_path, dataset_path):
    """The default kind leaves labels and weights of a configured run as they were: the same weights as
    the loop called directly with the labels of the old implementation (commit dc714ce)."""
    store = train_configured(tmp_path, dataset_path, "uniform")
    arrays = tiny_arrays()
    rng = np.random.default_rng(3)  # the old noisy_labels, verbatim
    mask = np.zeros(len(arrays.y_train), dtype=bool)
    mask[rng.choice(len(arrays.y_train), size=round(0.4 * len(arrays.y_train)), replace=False)] = True
    old = arrays.y_train.copy()
    old[mask] = rng.integers(0, 10, size=mask.sum())
    torch.manual_seed(3)
    model = build_model("mlp", arrays.sample_shape, 10)
    reference = tmp_path / "reference.h5"
    spec = TrainSpec(Recipe.from_config(RECIPE), 2, 1, 3)
    train_run(
        model,
        tensor_data(arrays, train_labels=old),
        spec,
        state_dir=tmp_path / "ref-state",
        out_path=reference,
        model_spec=store.model_spec,
        labels={},
        provenance={},
        progress=False,
    )
    assert states_equal(store.state_dict(2), CheckpointStore(reference).state_dict(2))
    assert np.array_equal(store.labels["train"], old) and np.array_equal(store.labels["noise_mask"], mask)
    assert np.array_equal(store.labels["true"], arrays.y_train)
    record = store.config["label_noise"]
    assert record["kind"] == "uniform" and record["rate"] == 0.4
    assert record["wrong_share"] == pytest.approx(np.mean(old != arrays.y_train))
    assert record["wrong_share"] < round(0.4 * 240) / 240  # some chosen samples kept their true label


def test_symmetric_run_changes_every_chosen_label(noisy_store):
    labels, true, mask = (noisy_store.labels[k] for k in ("train", "true", "noise_mask"))
    assert np.array_equal(labels != true, mask) and mask.sum() == 96
    assert noisy_store.config["label_noise"] == {"kind": "symmetric", "rate": 0.4, "wrong_share": 0.4}
    with h5py.File(noisy_store.path) as f:
        assert set(f["labels"]) == {"train", "noise_mask", "true"}


# --- a run's table, evaluation across runs -------------------------------------------------------------


def test_score_run_table_on_a_seeded_subset(noisy_store, tiny_data):
    settings = ScoreSettings(train_subset=100, reference_epochs=[2, 1], windows=[1], depths=[1], seed=5)
    table = score_run(noisy_store, tiny_data, settings)
    rows = subset_indices(240, 100, 5)
    assert table["sample"].tolist() == rows.tolist()
    assert np.array_equal(table["given_label"], noisy_store.labels["train"][rows])
    assert np.array_equal(table["mislabelled"], noisy_store.labels["noise_mask"][rows])
    assert tuple(table.columns[: len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    names = score_names([2, 1], [1], [1])
    assert list(suspicion(table_scores(table))) == names
    assert names == ["loss_t2", "loss_t1", "confidence", "variability", "aum", "forgetting"] + [
        "consistency_d1_t2_w1",
        "consistency_d1_t1_w1",
    ]
    # written and read back as the pipeline does, the evaluation is unchanged
    path = noisy_store.path.parent / "scores.tsv"
    table.to_csv(path, sep="\t", index=False)
    back = pd.read_csv(path, sep="\t")
    target = table["mislabelled"].to_numpy()
    expected = evaluation_table(suspicion(table_scores(table)), target, n_boot=20)
    result = evaluation_table(suspicion(table_scores(back)), target, n_boot=20)
    pd.testing.assert_frame_equal(result, expected)


def synthetic_table(n: int, seed: int, samples: np.ndarray | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 10, n)
    given, mask = noisy_labels(true, 0.3, 10, seed, "uniform")
    wrong = given != true
    return pd.DataFrame(
        {
            "sample": np.arange(n) if samples is None else samples,
            "given_label": given,
            "true_label": true,
            "noise": mask,
            "mislabelled": wrong,
            "aum": -2.0 * wrong + rng.normal(0, 1, n),
            "forgetting": rng.integers(0, 3, n),
            "never_learned": rng.random(n) < 0.05,
            "consistency_d1_t4_w2": rng.random(n),
        }
    )


def test_evaluate_runs_adds_the_run_and_its_noise_to_each_score():
    tables = {"a": synthetic_table(300, 0), "b": synthetic_table(200, 1)}
    noise = {"a": {"rate": 0.3, "kind": "uniform"}, "b": {"rate": 0.3, "kind": "symmetric"}}
    table, curves = evaluate_runs(tables, noise, n_boot=50, seed=2)
    assert table["run"].tolist() == ["a"] * 3 + ["b"] * 3
    assert table["score"].tolist() == ["aum", "forgetting", "consistency_d1_t4_w2"] * 2
    rows_b = table[table["run"] == "b"].reset_index(drop=True)
    expected = evaluation_table(
        suspicion(table_scores(tables["b"])), tables["b"]["mislabelled"], n_boot=50, seed=2
    )
    pd.testing.assert_frame_equal(rows_b[expected.columns], expected)
    assert (rows_b["label_noise_kind"] == "symmetric").all()
    assert rows_b["wrong_share"].iloc[0] == pytest.approx(tables["b"]["mislabelled"].mean())
    assert table.loc[table["score"] == "aum", "auroc"].min() > 0.8
    roc = curves[(curves["run"] == "a") & (curves["score"] == "aum") & (curves["curve"] == "roc")]
    reference = roc_points(-tables["a"]["aum"].to_numpy(), tables["a"]["mislabelled"].to_numpy())
    np.testing.assert_array_equal(roc["x"], reference["fpr"])
    np.testing.assert_array_equal(roc["y"], reference["tpr"])
    assert set(curves["curve"]) == {"roc", "pr"}


# --- acting on the scores ----------------------------------------------------------------------------


def test_retrain_drop_selects_by_score_or_by_truth_among_the_scored_samples():
    table = synthetic_table(50, 3, samples=np.arange(50) * 3 + 1)  # a subset of a larger training set
    wrong = table["mislabelled"].to_numpy()
    oracle = retrain_drop(table, "oracle")
    assert oracle.tolist() == table["sample"][wrong].tolist()
    filtered = retrain_drop(table, "filtered", "aum")
    assert len(filtered) == wrong.sum()  # fraction None: as many as the oracle drops
    lowest_aum = table.sort_values("aum")["sample"][: wrong.sum()]
    assert filtered.tolist() == sorted(lowest_aum)
    assert len(retrain_drop(table, "filtered", "aum", 0.1)) == 5
    forgetting = retrain_drop(table, "filtered", "forgetting", 0.02)
    assert table.set_index("sample").loc[forgetting, "never_learned"].all()  # never learned rank first
    with pytest.raises(KeyError, match="scores: \\['aum'"):
        retrain_drop(table, "filtered", "loss_t9")
    with pytest.raises(ValueError, match="available: \\['filtered', 'oracle'\\]"):
        retrain_drop(table, "pruned")


def retrain(tmp_path, store, data, spec, dropped, name):
    out = tmp_path / name / "checkpoints.h5"
    metrics = retrain_without(
        store, data, spec, dropped, state_dir=tmp_path / name / "state", out_path=out, provenance={"x": 1}
    )
    return CheckpointStore(out), metrics


def test_retrain_dropping_nothing_replays_the_run_and_dropping_keeps_the_rest(tmp_path):
    path, data, spec = train_tiny(tmp_path / "run", epochs=2)
    store = CheckpointStore(path)
    replay, metrics = retrain(tmp_path, store, data, dataclasses.replace(spec, save_every=2), [], "all")
    assert replay.epochs == [0, 2]
    assert states_equal(replay.state_dict(2), store.state_dict(2))
    pd.testing.assert_frame_equal(metrics, store.metrics)
    dropped = np.array([5, 0, 17, 239])
    fewer, _ = retrain(tmp_path, store, data, dataclasses.replace(spec, epochs=1), dropped, "fewer")
    kept = np.setdiff1d(np.arange(240), dropped)
    assert fewer.labels["kept"].tolist() == kept.tolist()
    assert np.array_equal(fewer.labels["train"], store.labels["train"][kept])
    assert fewer.config["dropped"]["count"] == 4 and fewer.config["x"] == 1
    assert not states_equal(fewer.state_dict(1), store.state_dict(1))


def fake_store(test_acc: list[float], labels: np.ndarray, true: np.ndarray) -> SimpleNamespace:
    metrics = pd.DataFrame({"epoch": np.arange(len(test_acc)), "test_acc": test_acc})
    return SimpleNamespace(metrics=metrics, labels={"train": labels, "true": true})


def test_retrain_table_counts_and_compares_at_the_retrains_length():
    true = np.arange(10) % 3
    given = true.copy()
    given[[1, 4, 7]] = (given[[1, 4, 7]] + 1) % 3  # three mislabelled
    original = fake_store([0.1, 0.5, 0.9, 0.6, 0.55], given, true)
    keep_filtered = np.array([0, 2, 3, 4, 5, 8, 9])  # dropped 1, 6, 7: two of them mislabelled
    keep_oracle = np.array([0, 2, 3, 5, 6, 8, 9])
    retrained = {
        "filtered": fake_store([0.1, 0.6, 0.7, 0.8], given[keep_filtered], true[keep_filtered]),
        "oracle": fake_store([0.1, 0.7, 0.9, 0.85], given[keep_oracle], true[keep_oracle]),
    }
    table = retrain_table("r", original, retrained, "aum").set_index("variant")
    assert table["selection"].tolist() == ["none", "aum", "mislabelled"]
    assert (table["epochs"] == 3).all()
    assert table["test_acc"].tolist() == [0.6, 0.8, 0.85]  # the original at epoch 3, not its last
    assert table["best_test_acc"].tolist() == [0.9, 0.8, 0.9]
    assert table["best_epoch"].tolist() == [2, 3, 2]
    assert table["dropped"].tolist() == [0, 3, 3] and table["dropped_mislabelled"].tolist() == [0, 2, 3]
    assert table["wrong_share"].tolist() == pytest.approx([0.3, 1 / 7, 0.0])
    short = {**retrained, "oracle": fake_store([0.1, 0.2], given[keep_oracle], true[keep_oracle])}
    with pytest.raises(ValueError, match="different lengths"):
        retrain_table("r", original, short, "aum")


# --- config and planning ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config():
    return tiny_config()


def changed(config, section: dict) -> dict:
    config = copy.deepcopy(config)
    for key, value in section.items():
        node = config["mislabel"]
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return config


def test_planning_scores_noisy_runs_and_retrains_them(config):
    assert mislabel_runs(config) == ["m1d-noisy"] and retrain_runs(config) == ["m1d-noisy"]
    assert mislabel_runs(changed(config, {"runs": []})) == []
    assert retrain_runs(changed(config, {"retrain.runs": []})) == []
    assert retrain_settings(config, "m1d-noisy", "oracle") == {"epochs": 2, "selection": {}}
    filtered = retrain_settings(changed(config, {"retrain.epochs": None}), "m1d-noisy", "filtered")
    assert filtered == {"epochs": 4, "selection": {"score": "aum", "fraction": None}}
    names = mislabel_score_names(config, "m1d-noisy")
    assert names[:5] == ["loss_t4", "confidence", "variability", "aum", "forgetting"]
    assert names[5:] == [f"consistency_d{d}_t4_w{w}" for d in (1, 2) for w in (1, 2)]


@pytest.mark.parametrize(
    "section, message",
    [
        ({"runs": ["m1d-clean"]}, "`mislabel.runs`: run 'm1d-clean' has label_noise 0"),
        ({"runs": ["ghost"]}, "`mislabel.runs`: 'ghost' is not one of the allowed values"),
        ({"depths": [1, 5]}, "`mislabel.depths`: depth 5 does not exist for run 'm1d-noisy'"),
        ({"reference_epochs": [9]}, "`mislabel.reference_epochs`: 9 is not allowed for run 'm1d-noisy'"),
        ({"retrain.runs": ["m1d-clean"]}, "`mislabel.retrain.runs`: 'm1d-clean' is not one of the allowed"),
        ({"retrain.runs": ["m1d-clean"]}, "allowed values ['m1d-noisy']"),
        ({"retrain.score": "aum_t4"}, "`mislabel.retrain.score`: 'aum_t4' is not one of the allowed"),
        ({"retrain.score": "aum_t4"}, "allowed values ['loss_t4', 'confidence'"),
        ({"retrain.epochs": 5}, "`mislabel.retrain.epochs`: 5 is not allowed for run 'm1d-noisy': at most 4"),
        ({"figure_scores": ["aum", "loss"]}, "`mislabel.figure_scores`: 'loss' is not one of the allowed"),
    ],
)
def test_config_errors_name_the_key_and_the_allowed_values(config, section, message):
    with pytest.raises(ConfigError) as err:
        check_config(changed(config, section))
    assert message in str(err.value)


def test_score_settings_default_to_the_schema():
    node = schema()["properties"]["mislabel"]["properties"]
    for field in dataclasses.fields(ScoreSettings):
        default = field.default
        assert (list(default) if isinstance(default, tuple) else default) == node[field.name]["default"]
    kind = schema()["properties"]["runs"]["additionalProperties"]["properties"]["label_noise_kind"]
    assert kind["default"] == "uniform" and kind["enum"] == ["uniform", "symmetric"]

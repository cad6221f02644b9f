"""Training-dynamics scores as detectors of mislabelled training samples (docs/definitions.md §11, §14).

A training sample counts as mislabelled when its training (given) label differs from its true label.
From a run's saved checkpoints we take, per training sample and saved epoch, the logits of the full
network f^(e) and reduce them to a `History`: probability of the given label, margin (given-label
logit − largest other logit), loss, argmax and whether it equals the given label. The scores:

- loss at t: cross-entropy of f^(t) against the given label;
- confidence: mean over epochs of p(given) and variability: its population standard deviation
  (ddof = 0, Swayamdipta et al. 2020, Eq. 2 divides by the number of epochs E; their code uses np.std);
- AUM: mean over epochs of the margin (Pleiss et al. 2020);
- forgetting events: number of saved epochs e with correct at e−1 and wrong at e (Toneva et al. 2019);
  samples never correct at any epoch are flagged apart (`never_learned`) and ranked above every
  count, as Toneva et al. rank them as forgotten infinitely often;
- temporal consistency c(x; t−W, t), `correct` variant against the given label: mean over saved
  epochs τ in [t−W, t] (W in epochs) of 1[argmax g^(t)(h^(τ)(x)) == given label], at a split depth.

Each score has an orientation (`ORIENTATION`): its suspicion is the score times the orientation, so
larger suspicion = more likely mislabelled. Evaluation against the mislabelled flag: AUROC and average
precision (both equal to scikit-learn's on tied scores), with seeded percentile-bootstrap intervals
computed for all draws at once from per-tie-group counts, ROC and PR curve points; and the selection
of samples to drop before retraining.

Histories exclude the initialisation (epoch 0) by default (`training_epochs`): its predictions carry
no information about a sample, and a random correct-at-init would count as a spurious forgetting event.
Forgetting events are counted between consecutive *saved* epochs; with a save stride > 1 events
between two saved epochs are missed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from featdyn.checkpoints import CheckpointStore
from featdyn.composite import CompositeEngine
from featdyn.data import TensorData, mislabelled, training_subset
from featdyn.train import TrainSpec, train_run

ORIENTATION = {
    "loss": 1,
    "confidence": -1,
    "variability": 1,
    "aum": -1,
    "forgetting": 1,
    "consistency": -1,
}
"""Score kind → sign that turns the score into a suspicion (larger = more likely mislabelled)."""


# --- per-sample histories ----------------------------------------------------------------------


@dataclass
class History:
    """Per saved epoch and training sample, statistics of f^(e) against the given label: (E, N) arrays."""

    epochs: np.ndarray  # (E,)
    probability: np.ndarray  # p(given label), float64
    margin: np.ndarray  # given-label logit − largest other logit, float64
    loss: np.ndarray  # −log p(given label), float64
    prediction: np.ndarray  # argmax, int64
    correct: np.ndarray  # prediction == given label, bool

    def at(self, epoch: int) -> int:
        """Row of a saved epoch."""
        rows = np.flatnonzero(self.epochs == epoch)
        if len(rows) == 0:
            raise KeyError(f"epoch {epoch} is not in the history; epochs: {self.epochs.tolist()}")
        return int(rows[0])


def _logit_statistics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """(…, N, K) logits and (N,) labels → float64 p(given), margin, loss, and argmax, each (…, N)."""
    z = logits.double()
    index = labels.expand(*z.shape[:-1]).unsqueeze(-1)
    log_p = torch.log_softmax(z, -1).gather(-1, index).squeeze(-1)
    given = z.gather(-1, index).squeeze(-1)
    largest_other = z.scatter(-1, index, float("-inf")).amax(-1)
    return {
        "probability": log_p.exp(),
        "margin": given - largest_other,
        "loss": -log_p,
        "prediction": z.argmax(-1),
    }


def _history(epochs: Sequence[int], stats: Mapping[str, np.ndarray], labels: np.ndarray) -> History:
    return History(
        epochs=np.asarray(epochs, dtype=np.int64),
        probability=stats["probability"],
        margin=stats["margin"],
        loss=stats["loss"],
        prediction=stats["prediction"],
        correct=stats["prediction"] == np.asarray(labels)[None],
    )


def history_from_logits(
    logits: np.ndarray | torch.Tensor, labels: np.ndarray, epochs: Sequence[int] | None = None
) -> History:
    """History from precomputed logits (E, N, K) and given labels (N,)."""
    logits = torch.as_tensor(logits)
    stats = _logit_statistics(logits, torch.as_tensor(labels, dtype=torch.long))
    epochs = range(logits.shape[0]) if epochs is None else epochs
    return _history(epochs, {k: v.numpy() for k, v in stats.items()}, labels)


def training_epochs(store: CheckpointStore) -> list[int]:
    """The saved epochs after training started (without the initialisation, epoch 0)."""
    return [e for e in store.epochs if e > 0]


def _chunks(total: int, size: int) -> list[slice]:
    size = max(1, int(size))
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


@torch.no_grad()
def history_from_store(
    store: CheckpointStore,
    x: torch.Tensor,
    labels: np.ndarray,
    epochs: Sequence[int] | None = None,
    *,
    epoch_chunk: int = 16,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> History:
    """History of f^(e)(x) for every epoch e of `epochs` (default: `training_epochs`).

    Weights are read `epoch_chunk` epochs at a time; for each chunk the full forward (shallow then
    deep part of the same epoch) runs vmapped over the chunk's stacked weights, and the logits are
    reduced to per-sample statistics at once, so memory grows with neither the number of epochs nor K.
    """
    epochs = training_epochs(store) if epochs is None else list(epochs)
    model = store.build_model().to(device)
    y = torch.as_tensor(labels, dtype=torch.long, device=device)
    x = x.to(device)
    shape = (len(epochs), len(y))
    out = {k: np.empty(shape) for k in ("probability", "margin", "loss")}
    out["prediction"] = np.empty(shape, dtype=np.int64)
    for rows in _chunks(len(epochs), epoch_chunk):
        stacked = {k: v.to(device) for k, v in store.stacked(epochs[rows]).items()}
        engine = CompositeEngine(model, stacked, depth=1)
        for batch in _chunks(len(y), batch_size):
            logits = engine.deep(engine.shallow(x[batch]), slice(None))
            for name, value in _logit_statistics(logits, y[batch]).items():
                out[name][rows, batch] = value.cpu().numpy()
    return _history(epochs, out, labels)


# --- scores (§14) ------------------------------------------------------------------------------


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Per sample: number of epochs e with correct at e−1 and wrong at e; `correct` is (E, N)."""
    return (correct[:-1] & ~correct[1:]).sum(0)


def never_learned(correct: np.ndarray) -> np.ndarray:
    """Samples not correct at any epoch of the history."""
    return ~correct.any(0)


def dynamics_scores(history: History, reference_epochs: Sequence[int] = ()) -> dict[str, np.ndarray]:
    """Confidence, variability (population std, ddof = 0), AUM, forgetting events, never-learned flag,
    and the loss at each reference epoch t (`loss_t{t}`; default: the last epoch of the history)."""
    refs = list(reference_epochs) or [int(history.epochs[-1])]
    scores = {f"loss_t{t}": history.loss[history.at(t)] for t in refs}
    scores.update(
        confidence=history.probability.mean(0),
        variability=history.probability.std(0, ddof=0),
        aum=history.margin.mean(0),
        forgetting=forgetting_events(history.correct),
        never_learned=never_learned(history.correct),
    )
    return scores


@dataclass
class ConsistencyScores:
    """c(x; t−W, t), correct variant against the given label: values[depth, t, W, sample]."""

    depths: np.ndarray
    reference_epochs: np.ndarray
    windows: np.ndarray  # in epochs
    values: np.ndarray  # (D, R, W, N) float64

    def columns(self) -> dict[str, np.ndarray]:
        """One score column per (depth d, epoch t, window W): `consistency_d{d}_t{t}_w{W}`."""
        names = consistency_names(self.depths, self.reference_epochs, self.windows)
        return dict(zip(names, self.values.reshape(len(names), -1), strict=True))


def consistency_names(
    depths: Sequence[int], reference_epochs: Sequence[int], windows: Sequence[int]
) -> list[str]:
    """Consistency score columns, depth-major, then reference epoch, then window."""
    return [f"consistency_d{d}_t{t}_w{w}" for d in depths for t in reference_epochs for w in windows]


@torch.no_grad()
def given_label_consistency(
    store: CheckpointStore,
    x: torch.Tensor,
    labels: np.ndarray,
    depths: Sequence[int],
    reference_epochs: Sequence[int],
    windows: Sequence[int],
    *,
    epochs: Sequence[int] | None = None,
    epoch_chunk: int = 16,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> ConsistencyScores:
    """c(x; t−W, t) = mean over saved τ in [t−W, t] of 1[argmax g^(t)(h^(τ)(x)) == given label].

    Per t the window's epochs τ (of `epochs`, default every saved epoch) are read `epoch_chunk` at a
    time together with t; the shallow parts of all τ of a chunk run in one vmapped call and the deep
    part of t in one call on all their features. The indicators are summed from t backwards, so every
    window W comes from the same pass.
    """
    saved = np.asarray(store.epochs if epochs is None else epochs)
    windows, refs = np.asarray(windows, dtype=np.int64), np.asarray(reference_epochs, dtype=np.int64)
    if len(windows) == 0 or (windows < 0).any():
        raise ValueError(f"windows must be a non-empty list of epochs ≥ 0, got {windows.tolist()}")
    model = store.build_model().to(device)
    y = torch.as_tensor(labels, dtype=torch.long, device=device)
    x = x.to(device)
    values = np.empty((len(depths), len(refs), len(windows), len(y)))
    for j, t in enumerate(refs):
        taus = saved[(saved >= t - windows.max()) & (saved <= t)][::-1]  # t first, then backwards
        if len(taus) == 0 or taus[0] != t:
            raise ValueError(f"reference epoch {t} is not among the analysed saved epochs {saved.tolist()}")
        hits = np.zeros((len(depths), len(taus), len(y)), dtype=bool)
        for rows in _chunks(len(taus), epoch_chunk):
            stacked = {k: v.to(device) for k, v in store.stacked([*taus[rows], t]).items()}
            for i, depth in enumerate(depths):
                engine = CompositeEngine(model, stacked, depth, precision)
                n_tau = rows.stop - rows.start
                for batch in _chunks(len(y), batch_size):
                    features = engine.shallow(x[batch], slice(0, n_tau))
                    logits = engine.deep(features.flatten(0, 1)[None], slice(n_tau, n_tau + 1))[0]
                    predictions = logits.argmax(-1).view(n_tau, -1)
                    hits[i, rows, batch] = (predictions == y[batch]).cpu().numpy()
        running_mean = hits.cumsum(1) / np.arange(1, len(taus) + 1)[:, None]
        counts = (taus[None, :] >= t - windows[:, None]).sum(1)  # saved τ in [t−W, t] per W
        values[:, j] = running_mean[:, counts - 1]
    return ConsistencyScores(np.asarray(depths), refs, windows, values)


def run_scores(
    store: CheckpointStore,
    x: torch.Tensor,
    labels: np.ndarray,
    reference_epochs: Sequence[int],
    depths: Sequence[int] = (),
    windows: Sequence[int] = (),
    *,
    epoch_chunk: int = 16,
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """Every score of one run on training inputs `x` with given labels: the history scores over
    `training_epochs`, then the consistency columns for each depth, reference epoch and window."""
    history = history_from_store(
        store, x, labels, epoch_chunk=epoch_chunk, batch_size=batch_size, device=device
    )
    scores = dynamics_scores(history, reference_epochs)
    if len(depths) and len(windows):
        consistency = given_label_consistency(
            store,
            x,
            labels,
            depths,
            reference_epochs,
            windows,
            epoch_chunk=epoch_chunk,
            batch_size=batch_size,
            device=device,
            precision=precision,
        )
        scores.update(consistency.columns())
    return scores


def score_kind(name: str) -> str:
    """The kind of a score column (`loss_t200` → `loss`), a key of ORIENTATION."""
    for kind in ORIENTATION:
        if name == kind or name.startswith(kind + "_"):
            return kind
    raise KeyError(f"score {name!r} has no known kind; kinds: {sorted(ORIENTATION)}")


def suspicion(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each score oriented so that larger = more suspect (the never-learned flag itself is dropped);
    never-learned samples rank above every forgetting count (suspicion: the largest count + 1)."""
    out = {}
    for name, values in scores.items():
        if name == "never_learned":
            continue
        value = ORIENTATION[score_kind(name)] * np.asarray(values, dtype=np.float64)
        if score_kind(name) == "forgetting" and "never_learned" in scores:
            value = np.where(scores["never_learned"], _never_learned_rank(scores), value)
        out[name] = value
    return out


def _never_learned_rank(scores: Mapping[str, np.ndarray]) -> float:
    counts = np.asarray(scores["forgetting"], dtype=np.float64)
    return float(counts.max(initial=0.0)) + 1.0


# --- evaluation ---------------------------------------------------------------------------------


def _tie_groups(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct score values in descending order and each sample's group among them."""
    score = np.asarray(score, dtype=np.float64)
    if np.isnan(score).any():
        raise ValueError("scores contain NaN")
    negated, group = np.unique(-score, return_inverse=True)
    return -negated, group.ravel()


def _group_counts(
    group: np.ndarray, target: np.ndarray, n_groups: int, draws: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives per tie group for each row of sample indices `draws` (B, n): (B, G)."""
    offset = (np.arange(len(draws))[:, None] * n_groups + group[draws]).ravel()
    size = len(draws) * n_groups
    total = np.bincount(offset, minlength=size).reshape(len(draws), n_groups)
    positive = np.bincount(offset, weights=target[draws].ravel(), minlength=size).reshape(total.shape)
    return positive, total - positive


def _metrics_from_counts(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AP per row of per-group counts (groups by descending score); NaN without both classes.

    AUROC = P(score of a positive > score of a negative) + ½ P(equal): the trapezoidal ROC area.
    AP = Σ over thresholds of (recall increment) × precision, thresholds at the distinct scores.
    """
    tp, fp = positive.cumsum(1), negative.cumsum(1)
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        below = n_neg[:, None] - fp
        auroc = (positive * (below + 0.5 * negative)).sum(1) / (n_pos * n_neg)
        precision = np.where(positive > 0, tp / np.maximum(tp + fp, 1), 0.0)
        ap = (positive * precision).sum(1) / n_pos
    invalid = (n_pos == 0) | (n_neg == 0)
    return np.where(invalid, np.nan, auroc), np.where(n_pos == 0, np.nan, ap)


def auroc_ap(score: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """AUROC and average precision of `score` for the boolean `target` (as scikit-learn, ties included)."""
    _, group = _tie_groups(score)
    positive = np.bincount(group, weights=np.asarray(target, dtype=np.float64))
    negative = np.bincount(group) - positive
    auroc, ap = _metrics_from_counts(positive[None], negative[None])
    return float(auroc[0]), float(ap[0])


def bootstrap_auroc_ap(
    score: np.ndarray,
    target: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    budget: int = 2**22,
) -> dict[str, float]:
    """Point AUROC and AP with percentile-bootstrap intervals over samples drawn with replacement.

    All draws of a chunk (at most `budget` drawn indices) are evaluated at once from their per-tie-group
    counts. The same seed gives the same resamples for every score of a sample set (paired intervals).
    """
    values, group = _tie_groups(score)
    target = np.asarray(target, dtype=np.float64)
    n = len(target)
    rng = np.random.default_rng(seed)
    boot = []
    for rows in _chunks(n_boot, max(1, budget // max(n, 1))):
        draws = rng.integers(0, n, size=(rows.stop - rows.start, n))
        boot.append(np.stack(_metrics_from_counts(*_group_counts(group, target, len(values), draws)), 1))
    boot = np.concatenate(boot)
    tails = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    (auroc_lo, auroc_hi), (ap_lo, ap_hi) = np.nanpercentile(boot, tails, axis=0).T
    auroc, ap = auroc_ap(score, target)
    return {
        "auroc": auroc,
        "auroc_lo": auroc_lo,
        "auroc_hi": auroc_hi,
        "ap": ap,
        "ap_lo": ap_lo,
        "ap_hi": ap_hi,
    }


def roc_points(score: np.ndarray, target: np.ndarray) -> pd.DataFrame:
    """ROC curve: one point per distinct threshold, from (0, 0) at threshold +inf up to (1, 1)."""
    values, group = _tie_groups(score)
    positive = np.bincount(group, weights=np.asarray(target, dtype=np.float64))
    tp, fp = positive.cumsum(), (np.bincount(group) - positive).cumsum()
    return pd.DataFrame(
        {
            "threshold": np.concatenate([[np.inf], values]),
            "fpr": np.concatenate([[0.0], fp / fp[-1]]),
            "tpr": np.concatenate([[0.0], tp / tp[-1]]),
        }
    )


def pr_points(score: np.ndarray, target: np.ndarray) -> pd.DataFrame:
    """Precision-recall curve, one point per distinct threshold by increasing threshold, then the end
    point (recall 0, precision 1): the points of scikit-learn's `precision_recall_curve`."""
    values, group = _tie_groups(score)
    positive = np.bincount(group, weights=np.asarray(target, dtype=np.float64))
    tp, fp = positive.cumsum(), (np.bincount(group) - positive).cumsum()
    return pd.DataFrame(
        {
            "threshold": np.concatenate([values[::-1], [np.nan]]),
            "precision": np.concatenate([(tp / (tp + fp))[::-1], [1.0]]),
            "recall": np.concatenate([(tp / tp[-1])[::-1], [0.0]]),
        }
    )


def evaluation_table(
    suspicions: Mapping[str, np.ndarray],
    target: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per score: AUROC and AP for `target` (mislabelled) with bootstrap intervals, n, n_noisy."""
    target = np.asarray(target, dtype=bool)
    rows = [
        {"score": name, **bootstrap_auroc_ap(value, target, n_boot, seed, level)}
        for name, value in suspicions.items()
    ]
    table = pd.DataFrame(rows, columns=["score", "auroc", "auroc_lo", "auroc_hi", "ap", "ap_lo", "ap_hi"])
    return table.assign(n=len(target), n_noisy=int(target.sum()))


# --- acting on the scores -------------------------------------------------------------------------


def most_suspect(suspicion_values: np.ndarray, fraction: float) -> np.ndarray:
    """Positions of the round(fraction · n) most suspect samples, most suspect first; ties go to the
    lower position."""
    suspicion_values = np.asarray(suspicion_values, dtype=np.float64)
    if np.isnan(suspicion_values).any():
        raise ValueError("suspicion contains NaN")
    order = np.lexsort((np.arange(len(suspicion_values)), -suspicion_values))
    return order[: int(round(fraction * len(suspicion_values)))]


def oracle_drop(labels: np.ndarray, true_labels: np.ndarray) -> np.ndarray:
    """Positions of the truly mislabelled samples."""
    return np.flatnonzero(mislabelled(labels, true_labels))


def keep_mask(n: int, dropped: np.ndarray) -> np.ndarray:
    """Boolean mask over n samples: False at the dropped positions."""
    mask = np.ones(n, dtype=bool)
    mask[np.asarray(dropped, dtype=np.int64)] = False
    return mask


# --- per-run table ------------------------------------------------------------------------------


def sample_table(
    rows: np.ndarray,
    labels: np.ndarray,
    true_labels: np.ndarray,
    noise_mask: np.ndarray,
    scores: Mapping[str, np.ndarray],
) -> pd.DataFrame:
    """One row per scored training sample: index in the training set, given and true label, whether it
    was chosen for noise and whether it is mislabelled, then every score."""
    frame = pd.DataFrame(
        {
            "sample": np.asarray(rows, dtype=np.int64),
            "given_label": np.asarray(labels, dtype=np.int64),
            "true_label": np.asarray(true_labels, dtype=np.int64),
            "noise": np.asarray(noise_mask, dtype=bool),
            "mislabelled": mislabelled(labels, true_labels),
        }
    )
    return frame.assign(**{name: np.asarray(value) for name, value in scores.items()})


# --- the pipeline's jobs: a run's table, evaluation across runs, retraining ---------------------------

SAMPLE_COLUMNS = ("sample", "given_label", "true_label", "noise", "mislabelled")
"""The leading columns of a per-run sample table; every further column is a score."""

RETRAIN_VARIANTS = ("filtered", "oracle")
"""Retrains without the most suspect samples of a score, and without the truly mislabelled ones."""


def score_names(reference_epochs: Sequence[int], depths: Sequence[int], windows: Sequence[int]) -> list[str]:
    """The score columns of `run_scores` in its order, without the never-learned flag."""
    names = [f"loss_t{t}" for t in reference_epochs] + ["confidence", "variability", "aum", "forgetting"]
    return names + (consistency_names(depths, reference_epochs, windows) if len(windows) else [])


@dataclass(frozen=True)
class ScoreSettings:
    """What a scoring job reads: config section `mislabel` with the reference epochs resolved."""

    train_subset: int | None = None
    reference_epochs: Sequence[int] = ()
    windows: Sequence[int] = (5, 10, 20)
    depths: Sequence[int] = (1, 2)
    epoch_chunk: int = 16
    batch_size: int = 1024
    precision: str = "fp32"
    seed: int = 0


def score_run(
    store: CheckpointStore, tensors: TensorData, settings: ScoreSettings, device: str | torch.device = "cpu"
) -> pd.DataFrame:
    """A run's sample table: every score of `run_scores` on a seeded subset of the training set (all of
    it when `train_subset` is None), against the labels the run was trained on."""
    if "true" not in store.labels:
        raise KeyError(f"{store.path} has no labels/true: train the run again (featdyn now stores them)")
    rows, x = training_subset(tensors, settings.train_subset, settings.seed)
    given, true, noise = (store.labels[k][rows] for k in ("train", "true", "noise_mask"))
    scores = run_scores(
        store,
        x,
        given,
        settings.reference_epochs,
        settings.depths,
        settings.windows,
        epoch_chunk=settings.epoch_chunk,
        batch_size=settings.batch_size,
        device=device,
        precision=settings.precision,
    )
    return sample_table(rows, given, true, noise, scores)


def table_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The score columns of a sample table (the never-learned flag included)."""
    return {name: frame[name].to_numpy() for name in frame.columns if name not in SAMPLE_COLUMNS}


def detection_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """ROC (x = FPR, y = TPR) and precision-recall (x = recall, y = precision) points of every score of
    a sample table, oriented as suspicions: columns score, curve (`roc` or `pr`), x, y."""
    target = frame["mislabelled"].to_numpy()
    parts = []
    for name, value in suspicion(table_scores(frame)).items():
        roc, pr = roc_points(value, target), pr_points(value, target)
        parts.append(pd.DataFrame({"score": name, "curve": "roc", "x": roc.fpr, "y": roc.tpr}))
        parts.append(pd.DataFrame({"score": name, "curve": "pr", "x": pr.recall, "y": pr.precision}))
    return pd.concat(parts, ignore_index=True)


def evaluate_runs(
    tables: Mapping[str, pd.DataFrame],
    noise: Mapping[str, Mapping[str, Any]],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AUROC / AP with paired bootstrap intervals of every score of every run (`evaluation_table`), with
    the run's requested label noise (`noise[run]`: `rate`, `kind`) and the realised wrong share of its
    scored samples; and the ROC / PR points of every score (`detection_curves`), each with a run column."""
    evaluations, curves = [], []
    for run, frame in tables.items():
        table = evaluation_table(
            suspicion(table_scores(frame)), frame["mislabelled"].to_numpy(), n_boot, seed, level
        )
        head = {
            "run": run,
            "label_noise": noise[run]["rate"],
            "label_noise_kind": noise[run]["kind"],
            "wrong_share": float(frame["mislabelled"].mean()),
        }
        evaluations.append(pd.concat([pd.DataFrame([head] * len(table)), table], axis=1))
        curves.append(detection_curves(frame).assign(run=run))
    return pd.concat(evaluations, ignore_index=True), pd.concat(curves, ignore_index=True)


def retrain_drop(
    frame: pd.DataFrame, variant: str, score: str | None = None, fraction: float | None = None
) -> np.ndarray:
    """Training-set indices a retrain leaves out, sorted. `filtered`: the round(fraction · n) scored samples
    most suspect by `score` (fraction None: the scored samples' wrong share, so as many as the oracle
    drops); `oracle`: the mislabelled scored samples. Samples outside the scored subset are kept."""
    samples = frame["sample"].to_numpy()
    if variant == "oracle":
        return np.sort(samples[oracle_drop(frame["given_label"], frame["true_label"])])
    if variant != "filtered":
        raise ValueError(f"unknown retrain variant {variant!r}; available: {list(RETRAIN_VARIANTS)}")
    suspicions = suspicion(table_scores(frame))
    if score not in suspicions:
        raise KeyError(f"score {score!r} is not in the table; scores: {list(suspicions)}")
    share = float(frame["mislabelled"].mean()) if fraction is None else fraction
    return np.sort(samples[most_suspect(suspicions[score], share)])


def retrain_without(
    store: CheckpointStore,
    data: TensorData,
    spec: TrainSpec,
    dropped: np.ndarray,
    *,
    state_dir: str | Path,
    out_path: str | Path,
    provenance: Mapping[str, Any],
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Train the run's model afresh on its training set without the `dropped` samples.

    `data` holds the run's training tensors with the labels it was trained on (`interventions.run_tensors`).
    Same initialisation (torch seed `spec.seed`), recipe and per-epoch seeds as the run, through the one
    training loop `train_run` (kill-safe and resumable in `state_dir`); dropping nothing replays the
    run. The store keeps the labels of the kept samples and their training-set indices (`labels/kept`);
    the dropped set is part of the resume fingerprint (via the provenance).
    """
    keep = keep_mask(len(data.y_train), dropped)
    rows = torch.from_numpy(np.flatnonzero(keep)).to(data.x_train.device)
    subset = TensorData(data.x_train[rows], data.y_train[rows], data.x_test, data.y_test, data.classes)
    labels = {name: np.asarray(values)[keep] for name, values in store.labels.items()}
    labels["kept"] = np.flatnonzero(keep)
    digest = hashlib.sha256(np.sort(np.asarray(dropped, dtype=np.int64)).tobytes()).hexdigest()
    torch.manual_seed(spec.seed)
    model = store.build_model().to(device)
    return train_run(
        model,
        subset,
        spec,
        state_dir=state_dir,
        out_path=out_path,
        model_spec=store.model_spec,
        labels=labels,
        provenance={**provenance, "dropped": {"count": int((~keep).sum()), "sha256": digest}},
        progress=progress,
    )


def retrain_table(
    run: str, original: CheckpointStore, retrained: Mapping[str, CheckpointStore], score: str
) -> pd.DataFrame:
    """Test accuracy of the original run beside its retrains (`RETRAIN_VARIANTS`, one row each): final
    and best test accuracy, the training samples used, how many were dropped and how many of those were
    mislabelled; `selection` names what ranked the dropped samples (`score` for `filtered`). The
    original row covers its first E epochs, E the retrains' length: with the same initialisation,
    recipe and per-epoch seeds that is exactly a retrain on every sample for E epochs."""
    selections = {"original": "none", "filtered": score, "oracle": "mislabelled"}
    epochs = {int(store.metrics["epoch"].iloc[-1]) for store in retrained.values()}
    if len(epochs) != 1:
        raise ValueError(f"retrains of run {run!r} have different lengths: {sorted(epochs)}")
    last = epochs.pop()
    n_train = len(original.labels["train"])
    n_wrong = int(mislabelled(original.labels["train"], original.labels["true"]).sum())
    stores = {"original": original, **retrained}
    rows = []
    for variant, store in stores.items():
        metrics = store.metrics[store.metrics["epoch"].between(1, last)]
        wrong = mislabelled(store.labels["train"], store.labels["true"])
        best = metrics.loc[metrics["test_acc"].idxmax()]
        rows.append(
            {
                "run": run,
                "variant": variant,
                "selection": selections[variant],
                "epochs": last,
                "trained_on": len(wrong),
                "dropped": n_train - len(wrong),
                "dropped_mislabelled": n_wrong - int(wrong.sum()),
                "wrong_share": float(wrong.mean()),
                "test_acc": float(metrics["test_acc"].iloc[-1]),
                "best_test_acc": float(best["test_acc"]),
                "best_epoch": int(best["epoch"]),
            }
        )
    return pd.DataFrame(rows)

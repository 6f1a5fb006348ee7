"""The committed reference runs (results/reference) follow the schema, and the loader rejects what does not."""

import copy
import json

import pytest

from training.experiments import EXPERIMENTS
from training.results import REFERENCE_DIR, load_reference, thinned, validate_results

COMMITTED = sorted(REFERENCE_DIR.glob("*.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_committed_reference_runs_are_full_length_and_labelled(path):
    results = load_reference(path.stem)
    assert results["experiment"] == path.stem
    assert results["preset"] == "report"  # a quick run is never presented as a report-length one
    assert results["provenance"]["device_name"] and results["provenance"]["wall_time_s"] > 0
    arms = EXPERIMENTS[path.stem].arms("report")
    assert [run["label"] for run in results["runs"]] == [arm.label for arm in arms]
    for run, arm in zip(results["runs"], arms):
        assert run["config"]["epochs"] == arm.epochs and run["config"]["batch_size"] == arm.batch_size


def valid_results() -> dict:
    point = {"type": "TrainStep", "epoch": 0.5, "train_loss": 2.0}
    run = {"label": "a", "config": {}, "history": [point], "test_acc": 0.5, "train_time_s": 1.0}
    return {"experiment": "momentum", "preset": "report", "device": "cpu", "seed": 0, "runs": [run]}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: r.pop("preset"), "preset"),
        (lambda r: r["runs"].clear(), "no runs"),
        (lambda r: r["runs"][0].update(test_acc=56.86), "not a fraction"),
        (lambda r: r["runs"][0].update(history=[{"type": "Loss"}]), "malformed"),
        (lambda r: r["runs"][0].pop("train_time_s"), "train_time_s"),
    ],
)
def test_malformed_results_are_rejected(damage, message):
    results = copy.deepcopy(valid_results())
    assert validate_results(copy.deepcopy(results)) == results
    damage(results)
    with pytest.raises(ValueError, match=message):
        validate_results(results)


def test_a_reference_run_without_provenance_is_rejected(tmp_path):
    (tmp_path / "momentum.json").write_text(json.dumps(valid_results()))
    with pytest.raises(ValueError, match="provenance"):
        load_reference("momentum", tmp_path)
    assert load_reference("batchnorm", tmp_path) is None


def test_thinning_keeps_every_evaluation_and_both_ends_of_the_loss_curve():
    history = [{"type": "TrainStep", "epoch": i / 100, "train_loss": float(i)} for i in range(1, 101)]
    history.insert(50, {"type": "Evaluation", "epoch": 0.5, "test_acc": 0.4})
    results = {**valid_results(), "runs": [{**valid_results()["runs"][0], "history": history}]}
    (run,) = thinned(results, max_loss_points=10)["runs"]
    losses = [p["train_loss"] for p in run["history"] if p["type"] == "TrainStep"]
    assert losses == [1.0, 12.0, 23.0, 34.0, 45.0, 56.0, 67.0, 78.0, 89.0, 100.0]
    assert [p["type"] for p in run["history"]].count("Evaluation") == 1 and run["history"][5]["type"] == "Evaluation"
    assert len(results["runs"][0]["history"]) == 101  # the input is left as it was

"""Margins and verdicts: does a finished run say, truthfully, whether it showed the report's lesson?"""

import json
from dataclasses import asdict

import pytest

from training import lessons
from training.experiments import EXPERIMENTS, Lesson
from training.results import load_reference


def results(experiment: str, accuracies: dict[str, float], preset: str = "quick", test_images: int = 200, **changes) -> dict:
    arms = {arm.label: arm for arm in EXPERIMENTS[experiment].arms(preset, **changes)}
    confusion = [[test_images // 2, 0], [0, test_images // 2]]
    runs = [{"label": label, "config": asdict(arms[label]), "test_acc": acc, "confusion": confusion} for label, acc in accuracies.items()]
    return {"experiment": experiment, "preset": preset, "runs": runs}


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """A lessons file in which the batch-norm margin ran 20–30 points over the seeds."""
    path = tmp_path / "lessons.json"
    runs = [{"seed": s, "precision": "fp32", "accuracies": {"no batch norm": 0.10, "batch norm": 0.30 + s / 100}} for s in range(0, 11, 5)]
    entry = {"preset": "quick", "arms": lessons.preset_arms("batchnorm", "quick"), "runs": runs}
    path.write_text(json.dumps({"host": "a test host", "experiments": {"batchnorm": entry}}))
    monkeypatch.setattr(lessons, "LESSONS_FILE", path)
    return path


def test_margin_averages_each_side_and_counts_variants_by_prefix():
    lesson = Lesson(("momentum",), ("no momentum",))
    assert lessons.margin(lesson, {"no momentum": 0.40, "momentum 0.5": 0.46}) == pytest.approx(6.0)
    depth = EXPERIMENTS["architecture"].lessons[0]
    cells = {"conv1-fc1": 0.30, "conv1-fc2": 0.34, "conv5-fc1": 0.40, "conv5-fc2": 0.44, "conv3-fc1": 0.99}
    assert lessons.margin(depth, cells) == pytest.approx(10.0)
    assert lessons.margin(lesson, {"no momentum": 0.4}) is None


def test_a_clear_margin_agrees_with_the_report_and_shows_the_measured_spread(recorded):
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.10, "batch norm": 0.35}, seed=3))
    assert verdict.said == "batch norm came out ahead of no batch norm by 25.0 points, as the report found. In 3 repeat runs of these settings (other seeds) the gap was +20.0 to +30.0 points."
    assert verdict.details == "Judged against σ 5.0 points (a clear result is over twice that): this preset's seed-to-seed spread, seeds 0, 5, 10 in fp32 on a test host."


def test_a_margin_within_the_seed_spread_is_inconclusive(recorded):
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.30, "batch norm": 0.37}))
    # In plain words: what happened, what repeat runs did, what to try.
    assert verdict.said.startswith("No clear winner this time: batch norm ahead of no batch norm by 7.0 points, a gap repeat runs can make by chance.")
    assert "the gap was +20.0 to +30.0 points" in verdict.said and "another seed, or more epochs" in verdict.said
    assert "σ" not in verdict.said and "σ 5.0" in verdict.details


def test_a_reversed_margin_is_called_the_opposite_of_the_report(recorded):
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.60, "batch norm": 0.40}))
    assert verdict.said.startswith("no batch norm came out ahead of batch norm by 20.0 points: the opposite of what the report found")


def test_changed_settings_fall_back_to_the_test_sets_own_noise(recorded):
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.53}, test_images=100, lr=0.5))
    # 100 test images at 51.5%: a difference is uncertain by 100·√(2·p(1−p)/100) ≈ 7.1 points, more than the seeds' 5.0.
    assert verdict.said.startswith("No clear winner this time")
    assert "Nobody has repeated these settings; with 100 test images, a gap is uncertain by about 14.1 points either way from the test images alone, more than repeat runs at the quick preset vary by." in verdict.said
    assert verdict.details == "Judged against σ 7.1 points (a clear result is over twice that): the test set's own sampling noise, more than the quick preset's seed σ (5.0; these settings differ in lr)."


def test_off_the_preset_a_margin_inside_the_nearest_presets_seed_spread_is_inconclusive(recorded):
    # 2,000 test images make a difference uncertain by only 1.6 points, so a 4-point margin was called
    # "as the report found"; seeds alone moved this margin by σ 5.0 at the quick preset, next door.
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.54}, test_images=2000, lr=0.5))
    assert verdict.said.startswith("No clear winner this time: batch norm ahead of no batch norm by 4.0 points")
    assert "at the quick preset's, which differ in lr, the gap was +20.0 to +30.0 points over 3 repeat runs" in verdict.said
    assert "σ 5.0" in verdict.details and "the test set alone would give ±1.6" in verdict.details
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.62}, test_images=2000, lr=0.5))
    assert verdict.said.startswith("batch norm came out ahead of no batch norm by 12.0 points, as the report found")


def test_a_preset_nobody_measured_is_judged_by_the_nearest_measured_one_too(recorded):
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.54}, preset="report", test_images=2000))
    assert verdict.said.startswith("No clear winner this time") and "the seed-to-seed spread measured at the quick preset" in verdict.details


def test_the_nearest_measured_preset_is_the_one_fewest_settings_away(recorded):
    experiment = EXPERIMENTS["batchnorm"]
    quick = [asdict(arm) for arm in experiment.arms("quick", lr=0.5, epochs=3)]
    preset, _, differing = lessons.nearest_measured(experiment, quick)
    assert (preset, differing) == ("quick", ["epochs", "lr"])
    report = [asdict(arm) for arm in experiment.arms("report")]
    assert lessons.differing_settings(experiment, "report", report) == []
    assert {"lr", "n_train", "model"} <= set(lessons.differing_settings(experiment, "quick", report))
    assert lessons.differing_settings(experiment, "quick", report[:1]) == ["arms"]
    assert lessons.nearest_measured(EXPERIMENTS["momentum"], quick) is None  # nothing recorded for it here


def test_a_spread_measured_for_other_settings_is_not_used(recorded):
    entry = json.loads(recorded.read_text())
    entry["experiments"]["batchnorm"]["arms"][0]["lr"] = 0.5
    recorded.write_text(json.dumps(entry))
    assert lessons.measured("batchnorm", "quick") is None
    (verdict,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.10, "batch norm": 0.35}))
    assert "Nobody has repeated these settings" in verdict.said and "no seed spread was measured" in verdict.details


LESSONS = [(name, lesson) for name in ("batchnorm", "momentum", "adaptive-lr", "activations", "architecture") for lesson in EXPERIMENTS[name].lessons]


@pytest.mark.parametrize("name, lesson", LESSONS, ids=[lesson.name for _, lesson in LESSONS])
def test_the_committed_quick_runs_show_every_lesson_at_every_seed_and_precision(name, lesson):
    """results/lessons.json must hold 5 seeds × 2 precisions of the presets as they are now, each
    showing the report's direction by the lesson's margin."""
    recorded = lessons.measured(name, "quick")
    assert recorded, f"{name}: no runs recorded for the current quick preset; run benchmarks/lessons.py --write"
    assert {(run["precision"], run["seed"]) for run in recorded["runs"]} == {(p, s) for p in ("fp32", "bf16") for s in range(5)}
    assert lessons.spread(lesson, recorded)["min"] >= lesson.least


def test_where_the_dashed_reference_run_went_the_other_way_the_verdict_says_so_and_what_differs():
    """Activations' reference run (the report's settings and init) has tanh ahead of ReLU; a quick
    run with ReLU ahead is told that the dashed curves disagree, and in which settings the runs differ."""
    reference = load_reference("activations")
    ours = results("activations", {"relu": 0.40, "sigmoid": 0.10, "tanh": 0.35})
    (said,) = lessons.reference_disagreements(EXPERIMENTS["activations"], ours, reference)
    assert said.startswith("The dashed reference run has tanh ahead of relu instead, by 2.4 points")
    assert "which differ from this run's in batch size, epochs, init, model, momentum, optimizer, training images." in said
    agreeing = results("activations", {"relu": 0.30, "sigmoid": 0.10, "tanh": 0.35})
    assert lessons.reference_disagreements(EXPERIMENTS["activations"], agreeing, reference) == []
    assert lessons.reference_disagreements(EXPERIMENTS["activations"], ours, None) == []


def test_a_prediction_is_judged_by_the_verdicts_own_outcome(recorded):
    experiment = EXPERIMENTS["batchnorm"]
    choices = lessons.predictions(experiment)
    assert choices == {"ahead": "batch norm", "behind": "no batch norm", "unclear": "no clear winner"}
    clear = results("batchnorm", {"no batch norm": 0.10, "batch norm": 0.35})
    assert lessons.judged_prediction(experiment, choices["ahead"], clear).startswith("**Your prediction, batch norm: right.** This run: batch norm came out ahead")
    assert lessons.judged_prediction(experiment, choices["unclear"], clear).startswith("**Your prediction, no clear winner: not this time.**")
    within = results("batchnorm", {"no batch norm": 0.30, "batch norm": 0.37})  # inside the seeds' spread
    assert lessons.judged_prediction(experiment, choices["unclear"], within).startswith("**Your prediction, no clear winner: right.** This run: no clear winner")
    assert lessons.judged_prediction(experiment, None, clear) == "" and lessons.judged_prediction(experiment, choices["ahead"], None) == ""

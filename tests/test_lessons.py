"""Margins and verdicts: does a finished run say, truthfully, whether it showed the report's lesson?"""

import json
from dataclasses import asdict

import pytest

from training import lessons
from training.experiments import EXPERIMENTS, Lesson


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
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.10, "batch norm": 0.35}, seed=3))
    assert line.startswith("batch norm ahead of no batch norm by 25.0 points, as the report found")
    assert "+20.0 to +30.0" in line and "over seeds 0, 5, 10 in fp32 on a test host" in line


def test_a_margin_within_the_seed_spread_is_inconclusive(recorded):
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.30, "batch norm": 0.37}))
    assert line.startswith("Inconclusive this time: batch norm ahead of no batch norm by 7.0 points")


def test_a_reversed_margin_is_called_the_opposite_of_the_report(recorded):
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.60, "batch norm": 0.40}))
    assert "no batch norm ahead of batch norm by 20.0 points: the opposite of the report's finding" in line


def test_changed_settings_fall_back_to_the_test_sets_own_noise(recorded):
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.53}, test_images=100, lr=0.5))
    # 100 test images at 51.5%: a difference is uncertain by 100·√(2·p(1−p)/100) ≈ 7.1 points, more than the seeds' 5.0.
    assert line.startswith("Inconclusive this time") and "within twice the test set's own noise" in line
    assert "No seed spread was measured for these settings; the test set alone makes a margin uncertain by ±7.1 (1 σ), more than the seed-to-seed σ of the nearest measured preset, quick (5.0; these differ in lr)" in line


def test_off_the_preset_a_margin_inside_the_nearest_presets_seed_spread_is_inconclusive(recorded):
    # 2,000 test images make a difference uncertain by only 1.6 points, so a 4-point margin was called
    # "as the report found"; seeds alone moved this margin by σ 5.0 at the quick preset, next door.
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.54}, test_images=2000, lr=0.5))
    assert line.startswith("Inconclusive this time: batch norm ahead of no batch norm by 4.0 points, within twice the seed-to-seed σ measured at the quick preset")
    assert "the quick preset's (these differ in lr), ran +20.0 to +30.0" in line and "more than the test set alone makes a margin uncertain by ±1.6" in line
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.62}, test_images=2000, lr=0.5))
    assert line.startswith("batch norm ahead of no batch norm by 12.0 points, as the report found")


def test_a_preset_nobody_measured_is_judged_by_the_nearest_measured_one_too(recorded):
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.50, "batch norm": 0.54}, preset="report", test_images=2000))
    assert line.startswith("Inconclusive this time") and "within twice the seed-to-seed σ measured at the quick preset" in line


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
    (line,) = lessons.verdicts(EXPERIMENTS["batchnorm"], results("batchnorm", {"no batch norm": 0.10, "batch norm": 0.35}))
    assert "No seed spread was measured" in line


LESSONS = [(name, lesson) for name in ("batchnorm", "momentum", "adaptive-lr", "activations", "architecture") for lesson in EXPERIMENTS[name].lessons]


@pytest.mark.parametrize("name, lesson", LESSONS, ids=[lesson.name for _, lesson in LESSONS])
def test_the_committed_quick_runs_show_every_lesson_at_every_seed_and_precision(name, lesson):
    """results/lessons.json must hold 5 seeds × 2 precisions of the presets as they are now, each
    showing the report's direction by the lesson's margin."""
    recorded = lessons.measured(name, "quick")
    assert recorded, f"{name}: no runs recorded for the current quick preset; run benchmarks/lessons.py --write"
    assert {(run["precision"], run["seed"]) for run in recorded["runs"]} == {(p, s) for p in ("fp32", "bf16") for s in range(5)}
    assert lessons.spread(lesson, recorded)["min"] >= lesson.least

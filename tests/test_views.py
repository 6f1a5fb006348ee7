"""What the tabs draw from a run: reference runs beside live ones, dashed curves, one colour per arm, the table and its notes."""

import numpy as np
import pytest

from demo import views
from demo.tabs import batchnorm, depth
from training.experiments import get_experiment
from handlers import SMALL, last


@pytest.fixture
def recorded_batchnorm(monkeypatch):
    """A reference run of batchnorm with one arm, in place of the committed one."""
    recorded = {
        "experiment": "batchnorm",
        "preset": "report",
        "device_name": "AMD EPYC, 2 threads",
        "runs": [
            {
                "label": "batch norm",
                "config": {"init": "default"},
                "test_acc": 0.61,
                "train_time_s": 300.0,
                "history": [
                    {"type": "TrainStep", "epoch": 0.0, "train_loss": 2.0},
                    {"type": "TrainStep", "epoch": 2.0, "train_loss": 1.0},
                    {"type": "Evaluation", "epoch": 1.0, "test_acc": 0.5},
                    {"type": "Evaluation", "epoch": 2.0, "test_acc": 0.61},
                ],
            },
        ],
    }
    monkeypatch.setattr(views, "reference", lambda name: recorded if name == "batchnorm" else None)
    views.reference_curves.cache_clear()
    views.recorded_cells.cache_clear()
    yield recorded
    views.reference_curves.cache_clear()
    views.recorded_cells.cache_clear()


def test_reference_runs_are_listed_before_and_beside_a_live_run(tiny_data, recorded_batchnorm):
    experiment = get_experiment("batchnorm")
    before = views.results_table(experiment, None).set_index("arm")
    # Every arm of the report has a row before anyone trains, with the report's number.
    assert list(before.index) == ["no batch norm", "batch norm"]
    # Each with how many training images it saw: the report's two epochs of 50,000.
    assert before.loc["batch norm", "reference run"].startswith("61.00% in 300 s, ")
    assert before.loc["batch norm", "this run"] == "—" and before.loc["batch norm", "report (Kaggle GPU)"] == "60.11% in 51 s, 100k images"
    loss, accuracy, table, *_ = last(batchnorm.TAB.handler(**SMALL))
    assert {"batch norm", "no batch norm"} <= set(loss.dropna()["arm"])
    assert table.set_index("arm").loc["no batch norm", "reference run"] == "—"
    # Where the reference run comes from is said once, beside the table, not in every cell.
    assert "*Reference run:* the report preset, default init, seed 0, recorded on AMD EPYC, 2 threads." in views.table_notes(experiment)


@pytest.fixture
def no_reference_runs(monkeypatch):
    """No reference run of any experiment; what is worked out from them is worked out again."""
    monkeypatch.setattr(views, "reference", lambda name: None)
    views.recorded_cells.cache_clear()
    yield
    views.recorded_cells.cache_clear()


def test_the_table_notes_say_how_to_record_a_missing_reference_run_and_what_the_report_only_drew(no_reference_runs):
    notes = views.table_notes(get_experiment("transfer"))
    assert "none recorded yet (needs AlexNet's ImageNet weights)." in notes and "python -m" not in notes
    assert 'the report calls this run "with fine tuning"' in notes
    assert notes.endswith(get_experiment("transfer").notes)  # the experiment's own notes are read on the page
    table = views.results_table(get_experiment("activations"), None)
    assert list(table["report (Kaggle GPU)"]) == ["figure only", "—", "—"]


def test_reference_curves_are_dashed_and_drawn_before_any_training(recorded_batchnorm):
    experiment = get_experiment("batchnorm")
    loss, accuracy = views.curves(experiment, None, views.plot_series(experiment))
    reference = loss[loss["arm"] == "batch norm" + views.REFERENCE_TAG]
    # DASH_POINTS points from epoch 0 to 2 on the straight line from 2.0 to 1.0, a gap after every second.
    drawn = reference.dropna()
    assert len(drawn) == views.DASH_POINTS and reference["train loss"].isna().sum() == views.DASH_POINTS // 2
    assert drawn["epoch"].min() == 0 and drawn["epoch"].max() == 2
    assert np.allclose(drawn["train loss"], 2 - drawn["epoch"] / 2)
    accuracy_reference = accuracy[accuracy["arm"] == "batch norm" + views.REFERENCE_TAG].dropna()
    assert accuracy_reference["test accuracy (%)"].iloc[[0, -1]].tolist() == pytest.approx([50, 61])
    # The live arms are there from the start, without points, so the plot gives them a colour.
    live = loss[loss["arm"].isin(["no batch norm", "batch norm"])]
    assert len(live) == 2 and live["train loss"].isna().all()


def test_every_update_holds_every_series_in_one_colour_per_arm(tiny_data, recorded_batchnorm):
    series = views.plot_series(get_experiment("batchnorm"))
    expected = {*series, "batch norm" + views.REFERENCE_TAG}
    updates = list(batchnorm.TAB.handler(**SMALL))
    assert all(set(loss["arm"]) == set(accuracy["arm"]) == expected for loss, accuracy, *_ in updates)
    colours = views.colour_map(series)
    assert colours["batch norm"] == colours["batch norm" + views.REFERENCE_TAG] != colours["no batch norm"]


@pytest.mark.parametrize(("label", "series"), [("momentum 0.5", "momentum"), ("no momentum", "no momentum"), ("momentum", "momentum"), ("adam", "adam")])
def test_variants_of_an_arm_share_its_series(label, series):
    assert views.series_of(label, ("no momentum", "momentum", "adam")) == series


def test_depth_tab_draws_the_recorded_reference_grid(monkeypatch):
    runs = [{"label": f"conv{c}-fc{f}", "config": {"n_conv": c, "n_fc": f}, "test_acc": 0.5, "train_time_s": 10.0} for c in (1, 2) for f in (1, 3)]
    monkeypatch.setattr(depth, "reference", lambda name: {"preset": "report", "device_name": "CPU", "runs": runs} if name == "architecture" else None)
    accuracy, seconds = depth.reference_figures()
    assert [t.get_text() for t in accuracy.axes[0].texts] == ["50.0"] * 4
    assert accuracy.axes[0].get_title() == "Reference (report, CPU)\nTest accuracy (%)"
    monkeypatch.setattr(depth, "reference", lambda name: None)
    assert depth.reference_figures() is None


def test_the_caption_says_what_the_dashed_curves_are(monkeypatch):
    config = {"epochs": 5, "n_train": None, "batch_size": 10, "init": "he"}
    recorded = {"preset": "report", "device_name": "AMD EPYC, 2 threads", "precision": "bf16", "runs": [{"config": config}]}
    monkeypatch.setattr(views, "reference", lambda name: recorded if name == "momentum" else None)
    caption = views.reference_caption("momentum")
    assert caption.startswith("Dashed: the reference run (report preset: 5 epochs over 50,000 training images, batch 10, he init, bf16), recorded on AMD EPYC, 2 threads.")
    assert views.reference_caption("final") is None


def test_loss_points_above_the_axis_are_left_out_and_ticks_keep_two_decimals(recorded_batchnorm):
    experiment = get_experiment("batchnorm")
    history = [{"type": "TrainStep", "epoch": 0.1, "train_loss": 12.0}, {"type": "TrainStep", "epoch": 1.0, "train_loss": 1.5}]
    recorder = type("Recorder", (), {"runs": {"batch norm": {"label": "batch norm", "history": history}}})()
    loss, _ = views.curves(experiment, recorder, views.plot_series(experiment))
    assert views.loss_ceiling(get_experiment("batchnorm")) == 3.5 and views.loss_ceiling(get_experiment("transfer")) == 1.0
    assert views.loss_ceiling(get_experiment("your-images")) == 3.5  # up to 10 classes of your own
    assert loss[loss["arm"] == "batch norm"].dropna()["train loss"].tolist() == [1.5]
    loss_plot, accuracy_plot = views.line_plots(experiment, views.plot_series(experiment))
    assert loss_plot.y_lim == [0, 3.5] and loss_plot.x_axis_format == loss_plot.y_axis_format == ".2~f"

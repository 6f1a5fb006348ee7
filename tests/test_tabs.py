"""The lesson tabs driven through their Train handlers: paired streams, Stop, bounds, first clicks, and the pictures beside the controls."""

import io
import time
from urllib.error import URLError

import gradio as gr
import numpy as np
import pytest
import torch

from app import TABS
from demo import panel, settings, views
from demo.lesson import lesson_tabs
from demo.tabs import activations, adaptive_lr, batchnorm, depth, momentum, transfer
from serving import classroom as classroom_module
from serving.classroom import classroom
from training.experiments import get_experiment
from conftest import NO_HASH_IN_NAMES
from handlers import SMALL, last, Session


def test_momentum_streams_paired_curves_and_a_results_table(tiny_data):
    updates = list(momentum.TAB.handler(0.5, **{**SMALL, "epochs": 2}))
    loss, accuracy, table, status, session, *_instrument = updates[-1]
    # The plots draw the β arm as the tab's fixed "momentum" series; the table names β.
    live = lambda frame: set(frame[~frame["arm"].str.endswith(views.REFERENCE_TAG)].dropna()["arm"])  # noqa: E731
    assert live(loss) == live(accuracy) == {"no momentum", "momentum"}
    finished_arms = table[table["this run"].str.match(r"\d+\.\d\d%, ")]
    assert list(finished_arms["arm"]) == ["no momentum", "momentum 0.5"]
    assert status.startswith("Done")
    runs = session["results"]["runs"]
    assert [r["config"]["momentum"] for r in runs] == [0.0, 0.5]
    assert set(session["models"]) == {"no momentum", "momentum 0.5"}
    assert all(isinstance(u[4], type(gr.skip())) for u in updates[:-1])


def training(stream) -> tuple:
    """The stream's first update once its run trains (before, it may wait in line)."""
    for outputs in stream:
        if outputs[3].startswith("Training"):
            return outputs
    raise AssertionError("the run never trained")


def test_stop_reports_how_far_the_run_got_and_each_arm_where_it_stopped(tiny_data, monkeypatch):
    student, other = Session("student"), Session("other student")
    # Batch 2: 80 steps an epoch, so that no arm finishes before the first update.
    stream = momentum.TAB.handler(0.5, **{**SMALL, "epochs": 2, "batch_size": 2}, request=student)
    training(stream)
    live_table, status = panel.stop_run(student)  # Stop read while the run is still live
    assert status.startswith("**Stopped** after ") and "training steps" in status
    cells = [cell for cell in live_table["this run"] if cell != "—"]
    assert cells and all(cell.startswith("stopped") for cell in cells)
    assert not any(update[3].startswith("Done") for update in stream)  # the stream ends, unfinished
    assert panel.stop_run(other) == (gr.skip(), gr.skip())  # reported to that session only


def test_stop_after_the_stream_closed_still_reports_it_and_a_finished_run_reports_nothing(tiny_data):
    student = Session("student")
    # Batch 2: 80 steps an epoch, so that the grid is still training when its stream closes.
    stream = depth.TAB.handler([1, 2], [1], **{**SMALL, "batch_size": 2}, request=student)
    training(stream)
    stream.close()  # Gradio may close the stream before Stop's own handler runs
    table, status = panel.stop_run(student)
    assert status.startswith("**Stopped** after ")
    assert "training…" not in set(table["this run"]) and any(cell.startswith("stopped") for cell in table["this run"])
    last(momentum.TAB.handler(0.5, **SMALL, request=student))
    assert panel.stop_run(student) == (gr.skip(), gr.skip())


def test_a_run_nobody_reads_any_more_is_closed_and_frees_its_models(tiny_data, monkeypatch):
    monkeypatch.setattr(classroom_module, "ABANDONED_AFTER_S", 0.3)
    stream = momentum.TAB.handler(0.5, **{**SMALL, "epochs": 2, "batch_size": 2}, request=Session("gone"))
    next(stream)
    deadline = time.monotonic() + 5
    while not classroom.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert classroom.running, "the run never started"
    deadline = time.monotonic() + 15
    while classroom.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not classroom.running


def test_activations_compare_the_chosen_functions(tiny_data):
    loss, accuracy, _, _, session, *_instrument = last(activations.TAB.handler(["tanh", "gelu"], **SMALL))
    assert [r["config"]["activation"] for r in session["results"]["runs"]] == ["tanh", "gelu"]
    # gelu is one of the plot's fixed series, so it gets a colour.
    assert {"tanh", "gelu"} <= set(accuracy.dropna()["arm"]) and set(loss["arm"]) <= set(views.colour_map(activations.SERIES))


def test_adaptive_lr_can_add_an_adam_arm(tiny_data):
    *_, session, _, _ = last(adaptive_lr.TAB.handler(True, **SMALL))
    optimizers = [(r["config"]["optimizer"], r["config"]["lr"]) for r in session["results"]["runs"]]
    assert optimizers == [("sgd", 0.01), ("adadelta", 1.0), ("adam", 0.001)]


def test_batchnorm_arms_differ_only_in_batch_norm(tiny_data):
    *_, session, _, _ = last(batchnorm.TAB.handler(**SMALL))
    a, b = (r["config"] for r in session["results"]["runs"])
    assert {k for k in a if a[k] != b[k]} == {"label", "model_overrides", "batch_norm"}


def test_batchnorm_init_control_reaches_both_arms_and_a_verdict_follows(tiny_data):
    *_, status, session, _, _ = last(batchnorm.TAB.handler(**SMALL, init="he"))
    assert [r["config"]["init"] for r in session["results"]["runs"]] == ["he", "he"]
    # Tiny settings are not the preset's: no seed spread was measured for them.
    assert "**Verdict:**" in status and "Nobody has repeated" in status and "<small>Judged against σ" in status


@pytest.mark.parametrize(
    "experiment, init, message", [("batchnorm", "xavier", "init must be one of default, he"), ("transfer", "he", "starts from pretrained weights")]
)
def test_an_init_the_model_cannot_take_is_refused(experiment, init, message):
    with pytest.raises(ValueError, match=message):
        settings.checked_arms(settings.Settings.checked("quick", init=init).arms(get_experiment(experiment)))


def test_the_preset_note_says_what_the_quick_regime_changes():
    note = settings.preset_note(get_experiment("momentum"), "quick")
    changes = note.split("changes**")[1].split(". ")[0]
    assert "training images 6,000 (report: all)" in changes and "init he (report: default)" in changes and "learning rate" not in changes
    assert "report's settings" in settings.preset_note(get_experiment("momentum"), "report")


def test_depth_grid_fills_every_chosen_cell(tiny_data):
    accuracy, seconds, table, status, session, instrument, sentences = last(depth.TAB.handler([1, 2], [1, 3], **SMALL))
    assert sorted(table[table["this run"].str.match(r"\d+\.\d\d%, ")]["arm"]) == ["conv1-fc1", "conv1-fc3", "conv2-fc1", "conv2-fc3"]
    cells = [t.get_text() for t in accuracy.axes[0].texts]
    assert len(cells) == 4 and "…" not in cells
    # Its instrument: the first layer's gradient of every cell, by conv count, one line per fc count.
    drawn = {(conv, fc) for conv, value, fc in instrument.value["data"] if value is not None}
    assert drawn == {("1", "1 fc"), ("1", "3 fc"), ("2", "1 fc"), ("2", "3 fc")} and instrument.sort == ["1", "2"]
    assert "The deepest cells' first layer got" in sentences


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: momentum.TAB.handler(0.9, **{**SMALL, "epochs": 10**6}), "epochs must be between 1 and 30"),
        (lambda: momentum.TAB.handler(1.5, **SMALL), "momentum must be between"),
        (lambda: batchnorm.TAB.handler(**{**SMALL, "lr": float("nan")}), "lr must be between"),
        (lambda: batchnorm.TAB.handler(**{**SMALL, "batch_size": "many"}), "batch_size must be a number"),
        (lambda: depth.TAB.handler(list(range(1, 51)), list(range(1, 51)), **SMALL), "Choose conv layer counts from 1 to 7"),
        (lambda: activations.TAB.handler(["swish"], **SMALL), "unknown: swish"),
        (lambda: batchnorm.TAB.handler(**{**SMALL, "preset": "huge"}), "preset must be"),
    ],
)
def test_out_of_bounds_requests_get_a_clear_error(call, message, tiny_data):
    with pytest.raises(gr.Error, match=message):
        next(call())


def test_report_preset_on_a_cpu_is_refused_as_a_gpu_job(tiny_data, monkeypatch):
    monkeypatch.setattr(settings, "GPU_AVAILABLE", False)
    with pytest.raises(gr.Error, match="GPU job"):
        next(momentum.TAB.handler(0.9, "report", 5, 50_000, 0.001, 10, 0))


def test_a_first_click_on_a_fresh_host_shows_the_download_then_trains(slow_cifar_download, tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "fresh-host"))
    statuses = [update[3] for update in batchnorm.TAB.handler(**SMALL)]
    assert any(s.startswith("Downloading CIFAR-10, ") and s.endswith("%…") for s in statuses), statuses[:5]
    assert statuses[-1].startswith("Done on")


def test_a_first_transfer_click_shows_the_imagenet_weights_downloading_then_trains(tiny_data, torch_home, tmp_path, monkeypatch):
    payload = (torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").read_bytes()

    class SlowResponse(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def read(self, size=-1):
            time.sleep(0.05)
            return super().read(len(payload) // 10 + 1)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-torch-home"))
    monkeypatch.setattr("training.sources.urlopen", lambda url, timeout: SlowResponse(payload))
    monkeypatch.setattr(torch.hub, "HASH_REGEX", NO_HASH_IN_NAMES)  # the stand-in weights are not ImageNet's, whose hash the name holds
    statuses = [update[3] for update in transfer.TAB.handler(epochs=1)]
    assert any(s.startswith("Downloading AlexNet's ImageNet weights, 2") and s.endswith("%…") for s in statuses), statuses[:3]
    assert statuses[-1].startswith("Done on")
    assert "**Verdict:** " in statuses[-1] and "fine tuning" in statuses[-1].split("**Verdict:** ")[1]
    assert (tmp_path / "fresh-torch-home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").stat().st_size == len(payload)


def test_transfer_on_a_cached_file_that_is_not_imagenets_weights_says_so_and_trains_nothing(tiny_data, tmp_path, monkeypatch, names_hold_hashes):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cached.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, cached)
    status = last(transfer.TAB.handler(epochs=1))[3]
    assert status.startswith("**Cannot train yet.** The file ") and "ImageNet weights: its SHA-256 begins " in status


def test_a_download_whose_hash_does_not_match_its_name_is_refused_and_not_kept(tmp_path, monkeypatch, names_hold_hashes):
    from training.sources import download_checkpoint

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    class Response(io.BytesIO):
        headers = {}  # no Content-Length: the status counts megabytes instead

    monkeypatch.setattr("training.sources.urlopen", lambda url, timeout: Response(b"not the weights"))
    with pytest.raises(OSError, match="corrupt"):
        download_checkpoint("https://example.org/weights-0123abcd.pth", "weights")
    assert not any((tmp_path / "hub" / "checkpoints").iterdir())


def test_missing_data_stays_on_screen_escaped_and_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("training.sources.urlopen", offline)
    shown = list(batchnorm.TAB.handler(**SMALL))
    # The run ends with the instructions in the status, beside the controls, where they stay; the
    # reason's <urlopen error …> is text there, not a tag the browser swallows.
    status = shown[-1][3]
    assert status.startswith("**Cannot train yet.** CIFAR-10 was not found")
    assert "&lt;urlopen error [Errno -3] Temporary failure in name resolution&gt;" in status
    assert "Set DATA_DIR" in status and "cifar-10-batches-py" in status
    # The last sentence is a paragraph of its own, not a line glued onto the list's item 2.
    assert status.splitlines()[-2].strip() == "" and status.splitlines()[-1].startswith("Set DATA_DIR")
    # A refused run trained nothing: no arm is left "training…".
    assert set(shown[-1][2]["this run"]) == {"—"}


def test_preset_values_follow_the_experiment():
    assert settings.preset_values("batchnorm", "report") == (2, 50_000, 0.001, 10, "default")
    assert settings.preset_values("transfer", "quick") == (2, 245, 0.001, 20, "default")


def test_activation_curves_show_sigmoids_small_slope():
    values, slopes = activations.activation_curves(["relu", "sigmoid"])
    sigmoid = slopes[slopes["activation"] == "sigmoid"]["slope"]
    relu = slopes[slopes["activation"] == "relu"]["slope"]
    assert sigmoid.max() == pytest.approx(0.25, abs=1e-3) and relu.max() == 1.0


def sign_flips(values: np.ndarray) -> int:
    return int(np.sum(np.sign(values[1:]) != np.sign(values[:-1])))


def test_at_the_default_rate_plain_sgd_zig_zags_and_crawls_and_momentum_damps_and_speeds_up():
    paths = momentum.descent_paths(beta=0.9, lr=momentum.SURFACE_LR)
    plain, heavy = paths["no momentum"], paths["momentum 0.9"]
    loss = {k: 0.5 * (np.array(momentum.SURFACE_CURVATURE) * p[-1] ** 2).sum() for k, p in paths.items()}
    assert loss["momentum 0.9"] < loss["no momentum"] / 10
    # Across the valley (y): plain SGD flips side at every step and is still half as far out after
    # 20 steps; momentum's swing is over 10 times smaller by then.
    assert sign_flips(plain[:, 1]) == momentum.SURFACE_STEPS and abs(plain[20, 1]) > 0.3
    assert abs(heavy[20, 1]) < abs(plain[20, 1]) / 10
    # Along the floor (x): plain SGD crawls, never reaching the middle.
    assert sign_flips(plain[:, 0]) == 0 and abs(plain[-1, 0]) > 0.5
    assert all(np.array_equal(p[0], momentum.SURFACE_START) for p in paths.values())
    # What the slider's note says of the picture: momentum keeps swinging across for most of the
    # steps, its widest swing shrinking by at least a quarter every 10 (under a tenth of the start over the last
    # 10), while plain SGD's still spans over a third; along the floor momentum passes the middle
    # and comes back.
    def widest(path, first):
        return np.abs(path[first : first + 10, 1]).max()

    assert sign_flips(heavy[:, 1]) >= momentum.SURFACE_STEPS // 2
    assert widest(heavy, 50) < 0.1 * abs(momentum.SURFACE_START[1]) < widest(plain, 50) / 3
    assert all(widest(heavy, a + 10) < 0.75 * widest(heavy, a) for a in range(0, 50, 10))
    assert heavy[10:, 0].max() > 1 and abs(heavy[-1, 0]) < 0.1 and plain[-1, 0] < -1
    assert momentum.loss_surface(0.5, 0.02).axes[0].get_title().startswith("60 steps of lr 0.02")


def test_at_a_small_rate_plain_sgd_glides_and_momentum_overshoots_as_the_tab_says():
    paths = momentum.descent_paths(beta=0.9, lr=0.005)
    assert sign_flips(paths["no momentum"][:, 1]) == 0
    assert sign_flips(paths["momentum 0.9"][:, 1]) > 5 and sign_flips(paths["momentum 0.9"][:, 0]) >= 1
    assert "try 0.005" in momentum.SURFACE_NOTE




def test_every_tabs_default_click_replays_what_the_warm_up_trained(app_url, tiny_data):
    from gradio_client import Client

    from serving.cache import run_key

    endpoints = Client(app_url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    for tab in lesson_tabs(TABS):
        # What a click sends: every input as the page shows it first (the endpoint's defaults).
        shown = {p["parameter_name"]: p["parameter_default"] for p in endpoints[f"/{tab.api_name}"]["parameters"]}
        clicked = panel.lesson_arms(tab, **{name: tuple(v) if isinstance(v, list) else v for name, v in shown.items()})
        assert run_key(tab.experiment_name, clicked) == run_key(tab.experiment_name, tab.warm_up_arms()), tab.title


def test_a_reading_against_what_its_gauge_expects_is_said_beside_the_plot(tiny_data):
    # At momentum 0 the "momentum" arm is plain SGD, sharing its partner's seed, weights and batches:
    # its first layer travels exactly as far, not farther, and the page says so instead of a bare number.
    *_, sentences = last(momentum.TAB.handler(0.0, **SMALL))
    assert "**Not as expected at these settings: expected > 1: momentum's first conv layer travels farther than plain SGD's; this run read 1.**" in sentences
    *_, sentences = last(momentum.TAB.handler(0.9, **SMALL))
    assert "farther than plain SGD's; this run read" not in sentences  # momentum 0.9 did travel farther


@pytest.mark.parametrize("tab", lesson_tabs(TABS), ids=lambda tab: tab.title)
def test_every_tabs_quick_preset_with_every_option_on_fits_a_cpu_run(tab):
    """A box a student ticks at the quick preset (the report's recipe beside the final CNN, Adam
    beside Adadelta) is never refused on a CPU as "a GPU job"."""
    options = {p.name: True if isinstance(p.default, bool) else p.default for p in tab.own_parameters}
    settings.check_budget(panel.lesson_arms(tab, **options, preset="quick"), "cpu")

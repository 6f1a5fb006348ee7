"""The tabs' handlers, called as plain functions on tiny datasets."""


import io
import json
import re
import time
from pathlib import Path
from urllib.error import URLError

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from demo.classroom import classroom
from demo import activations, adaptive_lr, batchnorm, classifiers, depth, final_cnn, momentum, panel, settings, transfer, uploads, views
from demo import classroom as classroom_module
from training.experiments import get_experiment
from models import AlexNetTransfer, TeachingCNN, create_model
from training.datasets import CIFAR10_CLASSES, CIFAR10_DATASET

TABS = {tab.experiment_name: tab for tab in (activations.TAB, adaptive_lr.TAB, batchnorm.TAB, depth.TAB, final_cnn.TAB, momentum.TAB, transfer.TAB)}
SMALL = dict(preset="quick", epochs=1, n_train=160, lr=0.01, batch_size=32, seed=0)


def last(generator):
    outputs = None
    for outputs in generator:
        pass
    return outputs


def test_momentum_streams_paired_curves_and_a_results_table(tiny_data):
    updates = list(momentum.TAB.handler(0.5, **{**SMALL, "epochs": 2}))
    loss, accuracy, table, status, session = updates[-1]
    # The plots draw the β arm as the tab's fixed "momentum" series; the table names β.
    live = lambda frame: set(frame[~frame["arm"].str.endswith(views.REFERENCE_TAG)].dropna()["arm"])  # noqa: E731
    assert live(loss) == live(accuracy) == {"no momentum", "momentum"}
    finished_arms = table[table["this run"].str.endswith("%")]
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


class Session:
    """A stand-in for the gr.Request Gradio passes a handler: one browser session."""

    def __init__(self, session_hash: str):
        self.session_hash = session_hash


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
    loss, accuracy, *_, session = last(activations.TAB.handler(["tanh", "gelu"], **SMALL))
    assert [r["config"]["activation"] for r in session["results"]["runs"]] == ["tanh", "gelu"]
    # gelu is one of the plot's fixed series, so it gets a colour.
    assert {"tanh", "gelu"} <= set(accuracy.dropna()["arm"]) and set(loss["arm"]) <= set(views.colour_map(activations.SERIES))


def test_adaptive_lr_can_add_an_adam_arm(tiny_data):
    *_, session = last(adaptive_lr.TAB.handler(True, **SMALL))
    optimizers = [(r["config"]["optimizer"], r["config"]["lr"]) for r in session["results"]["runs"]]
    assert optimizers == [("sgd", 0.01), ("adadelta", 1.0), ("adam", 0.001)]


def test_batchnorm_arms_differ_only_in_batch_norm(tiny_data):
    *_, session = last(batchnorm.TAB.handler(**SMALL))
    a, b = (r["config"] for r in session["results"]["runs"])
    assert {k for k in a if a[k] != b[k]} == {"label", "model_overrides", "batch_norm"}


def test_batchnorm_init_control_reaches_both_arms_and_a_verdict_follows(tiny_data):
    *_, status, session = last(batchnorm.TAB.handler(**SMALL, init="he"))
    assert [r["config"]["init"] for r in session["results"]["runs"]] == ["he", "he"]
    # Tiny settings are not the preset's, so the verdict can only cite the test set's own noise.
    assert "**Verdict:**" in status and "No seed spread was measured for these settings" in status


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
    accuracy, seconds, table, status, session = last(depth.TAB.handler([1, 2], [1, 3], **SMALL))
    assert sorted(table[table["this run"].str.endswith("%")]["arm"]) == ["conv1-fc1", "conv1-fc3", "conv2-fc1", "conv2-fc3"]
    cells = [t.get_text() for t in accuracy.axes[0].texts]
    assert len(cells) == 4 and "…" not in cells


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
    monkeypatch.setattr(torch.hub, "HASH_REGEX", re.compile(r"(?!)"))  # the stand-in weights are not ImageNet's, whose hash the name holds
    statuses = [update[3] for update in transfer.TAB.handler(epochs=1)]
    assert any(s.startswith("Downloading AlexNet's ImageNet weights, 2") and s.endswith("%…") for s in statuses), statuses[:3]
    assert statuses[-1].startswith("Done on")
    assert (tmp_path / "fresh-torch-home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").stat().st_size == len(payload)


def test_a_download_whose_hash_does_not_match_its_name_is_refused_and_not_kept(tmp_path, monkeypatch):
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
    assert momentum.loss_surface(0.5, 0.02).axes[0].get_title().startswith("60 steps of lr 0.02")


def test_at_a_small_rate_plain_sgd_glides_and_momentum_overshoots_as_the_tab_says():
    paths = momentum.descent_paths(beta=0.9, lr=0.005)
    assert sign_flips(paths["no momentum"][:, 1]) == 0
    assert sign_flips(paths["momentum 0.9"][:, 1]) > 5 and sign_flips(paths["momentum 0.9"][:, 0]) >= 1
    assert "try 0.005" in momentum.SURFACE_NOTE


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return str(path)


def odd_images(folder):
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    palette = Image.new("P", (20, 20))
    palette.info["transparency"] = 0
    sixteen = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    exif = Image.Image.getexif(Image.new("RGB", (1, 1)))
    exif[0x0112] = 6  # rotate 90°: a 40×20 sensor image is shown 20×40
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 255, 0), (0, 0, 255))]
    gif = folder / "animated.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    return {
        "grayscale": (save(Image.new("L", (33, 33), 128), folder / "gray.png"), (128, 128, 128)),
        "alpha": (save(rgba, folder / "alpha.png"), (255, 255, 255)),
        "palette": (save(palette, folder / "palette.png"), (255, 255, 255)),
        "16-bit": (save(sixteen, folder / "sixteen.png"), None),
        "cmyk": (save(Image.new("CMYK", (30, 30), (0, 0, 0, 0)), folder / "cmyk.jpg"), None),
        "exif": (save(Image.new("RGB", (40, 20), (10, 20, 30)), folder / "rotated.jpg", exif=exif), None),
        "gif": (str(gif), (0, 255, 0)),
    }


def test_odd_but_valid_uploads_become_rgb(tmp_path):
    for name, (path, corner) in odd_images(tmp_path).items():
        image = uploads.open_upload(path)
        assert image.mode == "RGB", name
        if corner:
            assert image.getpixel((0, 0)) == corner, name
    assert uploads.open_upload(odd_images(tmp_path)["exif"][0]).size == (20, 40)
    sixteen = np.asarray(uploads.open_upload(odd_images(tmp_path)["16-bit"][0]))
    assert sixteen.max() > 200  # scaled down, not clipped to white


def test_bad_uploads_get_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    Image.new("L", (8000, 6000)).save(tmp_path / "bomb.png")  # 48 megapixels, tiny file
    for name in ("notes.txt", "broken.png"):
        with pytest.raises(gr.Error, match="not an image this app can read"):
            uploads.open_upload(str(tmp_path / name))
    with pytest.raises(gr.Error, match="megapixels"):
        uploads.open_upload(str(tmp_path / "bomb.png"))
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(gr.Error, match="over 0 MB|smaller image"):
        uploads.open_upload(str(tmp_path / "notes.txt"))
    with pytest.raises(gr.Error, match="Upload an image first"):
        uploads.open_upload(None)


CAT_PHOTO = Path(__file__).parent / "assets" / "cat.jpg"  # Chelsea, scikit-image's cat (CC0, Stefan van der Walt)


@pytest.fixture
def no_default_model(monkeypatch):
    monkeypatch.setattr(classifiers, "cifar10_model", uploads.ConfiguredModel("CIFAR10_MODEL_UNSET_IN_TESTS", TeachingCNN))


def test_classify_cifar10_without_any_model_says_how_to_get_one(no_default_model, tmp_path):
    photo = save(Image.new("RGB", (32, 32)), tmp_path / "a.png")
    with pytest.raises(gr.Error, match="No default model could be loaded: CIFAR10_MODEL_UNSET_IN_TESTS is not set. Train one below"):
        final_cnn.classify_cifar10(photo, final_cnn.DEFAULT, None)
    with pytest.raises(gr.Error, match="No model has been trained in this session yet"):
        final_cnn.classify_cifar10(photo, final_cnn.SESSION, None)
    with pytest.raises(gr.Error, match="model must be"):
        final_cnn.classify_cifar10(photo, "the best one", None)


def test_the_embedded_classifier_answers_with_nothing_set(monkeypatch):
    monkeypatch.delenv("CIFAR10_MODEL", raising=False)
    monkeypatch.setattr(classifiers, "cifar10_model", uploads.ConfiguredModel("CIFAR10_MODEL", classifiers.cifar10_model.model_classes, default=classifiers.cifar10_model.default))
    photo, seen, probabilities, answered, filters, maps = final_cnn.classify_cifar10(str(CAT_PHOTO), final_cnn.DEFAULT, None)
    assert max(probabilities, key=probabilities.get) == "cat"
    predictions = load_file(classifiers.EMBEDDED_FOLDER / "cifar10" / "test_predictions.safetensors")
    accuracy = (predictions["label"] == predictions["predicted"]).float().mean().item()  # fp32, as the matrix shows
    recorded = json.loads((classifiers.EMBEDDED_FOLDER / "results.json").read_text())["runs"][0]["test_acc"]  # bf16, at the end of training
    assert abs(accuracy - recorded) < 0.002
    assert answered.startswith("**Answering: the embedded classifier") and f"{accuracy:.2%} on CIFAR-10's test set" in answered
    photo, seen, filters, maps = (np.asarray(Image.open(path)) for path in (photo, seen, filters, maps))
    assert max(photo.shape) <= 512 and seen.shape == (192, 192, 3)  # 32×32, each pixel 6×6
    # 24 first-layer (whitening) filters of 2×2, 8 to a row, each enlarged to 48 px, with 4-pixel borders.
    assert filters.shape == (3 * 48 + 4 * 4, 8 * 48 + 9 * 4, 3)
    assert maps.shape[2] == 3
    table = final_cnn.default_confusion()
    assert table[final_cnn.CORNER].tolist() == list(CIFAR10_CLASSES) and table.iloc[:, 1:].to_numpy().sum() == 10_000


def test_an_image_shown_is_written_once_and_never_rewritten_under_a_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "SHOWN_DIR", tmp_path)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = Path(views.image_file(pixels))
    written = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert views.image_file(pixels.copy()) == str(path) and path.stat().st_mtime_ns == written
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    assert views.image_file(pixels[::-1].copy()) != str(path)


def test_classifying_mirrors_the_photo_when_the_accuracy_was_measured_so():
    model = create_model("cnn-tiny").eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    plain, both = uploads.classify(model, image, CIFAR10_DATASET), uploads.classify(model, image, CIFAR10_DATASET, flip=True)
    assert plain != both and both == pytest.approx(uploads.classify(model, mirrored, CIFAR10_DATASET, flip=True), abs=1e-6)


def test_a_session_model_classifies_and_its_confusion_cells_show_their_test_images(tiny_data, no_default_model, tmp_path):
    *_, session, per_class, download, choice = last(final_cnn.TAB.handler(False, **SMALL))
    assert choice == final_cnn.SESSION and [run["label"] for run in session["results"]["runs"]] == ["final"]
    _, _, probabilities, answered, _, _ = final_cnn.classify_cifar10(save(Image.new("RGB", (50, 40), (200, 10, 10)), tmp_path / "red.png"), choice, session)
    assert len(probabilities) == 10 and "trained in this session (quick preset)" in answered
    table, summary = final_cnn.show_confusion(choice, session)
    recorded = session["results"]["runs"][0]["confusion"]
    assert table.iloc[:, 1:].to_numpy().tolist() == recorded and "trained in this session" in summary
    for true_class, predicted_class in (("cat", "cat"), ("cat", "dog")):
        gallery, note, matrix = final_cnn.browse_cell(true_class, predicted_class, choice, session)
        count = matrix.loc[matrix[final_cnn.CORNER] == true_class, final_cnn.SHORT_NAMES[CIFAR10_CLASSES.index(predicted_class)]].item()
        assert len(gallery) == count and note.startswith(f"**{count}** test images of a cat")
        assert all(np.asarray(Image.open(image)).shape == (128, 128, 3) and caption.endswith(predicted_class) for image, caption in gallery)
        confidences = [int(caption.split("%")[0]) for _, caption in gallery]
        assert confidences == sorted(confidences, reverse=True)
    assert matrix.iloc[:, 1:].to_numpy().sum() == 60  # the tiny test set: 6 images per class
    with pytest.raises(gr.Error, match="classes must be CIFAR-10's"):
        final_cnn.browse_cell("cat", "lion", choice, session)


def test_a_click_on_the_confusion_matrix_picks_its_cell():
    click = lambda row, column: final_cnn.select_cell(gr.SelectData(None, {"index": [row, column], "value": 0}))  # noqa: E731
    assert click(3, 1 + 5) == ("cat", "dog")
    assert all(isinstance(value, type(gr.skip())) for value in click(3, 0))  # the class-name column


def test_the_final_cnn_trains_the_report_recipe_beside_it_only_when_asked(tiny_data):
    *_, session, _, _, _ = last(final_cnn.TAB.handler(True, **SMALL))
    runs = {run["label"]: run["config"] for run in session["results"]["runs"]}
    assert list(runs) == ["final", "report recipe"]
    assert (runs["final"]["optimizer"], runs["report recipe"]["optimizer"]) == ("sgd", "adadelta")
    assert runs["final"]["widths"] == runs["report recipe"]["widths"] and runs["final"]["seed"] == runs["report recipe"]["seed"]


def test_recorded_test_predictions_give_the_matrix_and_the_accuracy_without_the_dataset(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from training.results import TEST_PREDICTIONS

    folder = tmp_path / "classifier" / "cifar10"
    create_model("cnn-tiny").save_pretrained(folder)
    labels = torch.arange(10).repeat_interleave(3)
    predicted = labels.clone()
    predicted[:4] = 5  # three airplanes and a car called dogs
    save_file({"label": labels.byte(), "predicted": predicted.byte(), "confidence": torch.full((30,), 0.5).half()}, folder / TEST_PREDICTIONS)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("CIFAR10_MODEL", str(folder))
    monkeypatch.setattr(classifiers, "cifar10_model", uploads.ConfiguredModel("CIFAR10_MODEL", TeachingCNN))
    table = final_cnn.default_confusion()
    assert table["dog"].tolist() == [3, 1, 0, 0, 0, 3, 0, 0, 0, 0] and table.iloc[:, 1:].to_numpy().sum() == 30
    assert f"({26 / 30:.2%} on CIFAR-10's test set" in final_cnn.default_summary()


def test_configured_model_prefers_the_variable_over_its_default(tmp_path, monkeypatch):
    for name in ("a", "b"):
        create_model("cnn-tiny").save_pretrained(tmp_path / name)
    monkeypatch.delenv("CNNLAB_TEST_MODEL", raising=False)
    fallback = uploads.ConfiguredModel("CNNLAB_TEST_MODEL", TeachingCNN, default=str(tmp_path / "a"))
    assert fallback.get() is not None and fallback.source == str(tmp_path / "a")
    monkeypatch.setenv("CNNLAB_TEST_MODEL", str(tmp_path / "b"))
    chosen = uploads.ConfiguredModel("CNNLAB_TEST_MODEL", TeachingCNN, default=str(tmp_path / "a"))
    assert chosen.get() is not None and chosen.source == str(tmp_path / "b")


def test_configured_model_loads_a_folder_and_reports_a_corrupt_one(tmp_path, monkeypatch, imagenet_weights):
    model = AlexNetTransfer(mode="fine_tuning")
    model.save_pretrained(tmp_path / "good")
    monkeypatch.setenv("ANTS_BEES_MODEL", str(tmp_path / "good"))
    configured = uploads.ConfiguredModel("ANTS_BEES_MODEL", AlexNetTransfer)
    monkeypatch.setattr(transfer, "ants_bees_model", configured)
    result = transfer.classify_ants_bees(save(Image.new("RGB", (300, 200), (250, 200, 0)), tmp_path / "bee.png"))
    assert set(result) == {"ants", "bees"} and sum(result.values()) == pytest.approx(1.0, abs=1e-5)

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"garbage")
    monkeypatch.setenv("ANTS_BEES_MODEL", str(tmp_path / "bad"))
    broken = uploads.ConfiguredModel("ANTS_BEES_MODEL", AlexNetTransfer)
    assert broken.get() is None and "corrupt" in broken.message


def test_final_cnn_download_is_a_loadable_checkpoint(tmp_path):
    import zipfile

    model = create_model("cnn-tiny")
    archive = final_cnn.saved_model_file(model)
    zipfile.ZipFile(archive).extractall(tmp_path)
    loaded = type(model).from_pretrained(tmp_path, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_transfer_examples_come_from_the_validation_photos(tiny_data):
    photos = transfer.example_photos()
    assert len(photos) == 4 and all("/val/" in p for p in photos)




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
    yield recorded
    views.reference_curves.cache_clear()


def test_reference_runs_are_listed_before_and_beside_a_live_run(tiny_data, recorded_batchnorm):
    experiment = get_experiment("batchnorm")
    before = views.results_table(experiment, None).set_index("arm")
    # Every arm of the report has a row before anyone trains, with the report's number.
    assert list(before.index) == ["no batch norm", "batch norm"]
    assert before.loc["batch norm", "reference run"] == "61.00% in 300 s"
    assert before.loc["batch norm", "this run"] == "—" and before.loc["batch norm", "report (Kaggle GPU)"] == "60.11% in 51 s"
    loss, accuracy, table, *_ = last(batchnorm.TAB.handler(**SMALL))
    assert {"batch norm", "no batch norm"} <= set(loss.dropna()["arm"])
    assert table.set_index("arm").loc["no batch norm", "reference run"] == "—"
    # Where the reference run comes from is said once, beside the table, not in every cell.
    assert "*Reference run:* the report preset, default init, seed 0, recorded on AMD EPYC, 2 threads." in views.table_notes(experiment)


def test_the_table_notes_say_how_to_record_a_missing_reference_run_and_what_the_report_only_drew(monkeypatch):
    monkeypatch.setattr(views, "reference", lambda name: None)
    notes = views.table_notes(get_experiment("transfer"))
    assert "none recorded yet (needs AlexNet's ImageNet weights); `python -m training reproduce --only transfer` records one." in notes
    assert 'the report calls this run "with fine tuning"' in notes
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

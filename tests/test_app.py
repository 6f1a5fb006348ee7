"""The app launched in-process on a free port, driven through gradio_client."""

import re
import time

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app import TABS
from serving.classroom import classroom
from demo.lesson import lesson_tabs
from test_classify import odd_images


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


SMALL = {"epochs": 1, "n_train": 160, "batch_size": 32}


@pytest.mark.parametrize("api_name", [f"/{tab.api_name}" for tab in lesson_tabs(TABS)])
def test_every_training_endpoint_answers_with_its_defaults(client, api_name):
    outputs = client.predict(api_name=api_name)
    table = next(o for o in outputs if isinstance(o, dict) and "arm" in o.get("headers", []))
    assert any(isinstance(o, str) and o.startswith("Done") for o in outputs)
    this_run = table["headers"].index("this run")
    live = [row[this_run] for row in table["data"] if row[this_run] != "—"]  # rows of reference-only arms show "—"
    assert live and all(re.match(r"\d+\.\d\d%, ", cell) for cell in live)  # every arm of this run finished


def test_a_comparison_streams_several_updates(client):
    job = client.submit(0.9, "quick", 4, 160, 0.01, 16, 0, api_name="/compare_momentum")
    updates = list(job)
    assert len(updates) >= 3
    loss_points = [len(update[0]["data"]) for update in updates if isinstance(update[0], dict) and "data" in update[0]]
    assert len(loss_points) >= 3
    assert loss_points == sorted(loss_points) and loss_points[-1] > loss_points[0]


def test_cancelling_stops_the_server_side_training(client):
    job = client.submit(0.9, "quick", 30, 160, 0.01, 16, 0, api_name="/compare_momentum")
    deadline = time.monotonic() + 60
    while not classroom.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert classroom.running, "training never started"
    job.cancel()
    deadline = time.monotonic() + 15
    while classroom.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not classroom.running
    assert not job.done() or job.status().code.name in ("CANCELLED", "FINISHED")


def test_classifiers_answer_odd_uploads_and_reject_bad_ones(client, tmp_path):
    for name, (path, _) in odd_images(tmp_path).items():
        result = client.predict(handle_file(path), "fine tuning", api_name="/classify_ants_bees")
        assert {c["label"] for c in result["confidences"]} == {"ants", "bees"}, name
    (tmp_path / "notes.png").write_text("not an image")
    Image.new("L", (8000, 6000)).save(tmp_path / "bomb.png")
    for bad in ("notes.png", "bomb.png"):
        with pytest.raises(Exception, match="not an image this app can read|megapixels"):
            client.predict(handle_file(str(tmp_path / bad)), "fine tuning", api_name="/classify_ants_bees")
    # Still serving after all of that.
    result = client.predict(handle_file(odd_images(tmp_path)["alpha"][0]), "fine tuning", api_name="/classify_ants_bees")
    assert result["label"] in ("ants", "bees")


def test_out_of_bounds_api_calls_get_clear_errors(client):
    # Gradio's own component checks answer first; the handlers repeat them (see test_demo).
    with pytest.raises(Exception, match="greater than maximum value 30|epochs must be between 1 and 30"):
        client.predict(0.9, "quick", 10**6, 160, 0.01, 16, 0, api_name="/compare_momentum")
    with pytest.raises(Exception, match="not in the list of choices|Choose conv layer counts"):
        client.predict(list(range(1, 51)), list(range(1, 51)), api_name="/depth_grid")


def test_a_model_trained_in_one_session_classifies_there_and_nowhere_else(client, tmp_path):
    photo = handle_file(odd_images(tmp_path)["grayscale"][0])
    trainer, stranger = Client(client.src, verbose=False), Client(client.src, verbose=False)
    *_, choice, _instrument, _sentences = trainer.predict(False, "quick", 1, 160, 0.01, 32, 0, api_name="/train_final_cnn")
    assert choice == "trained in this session"
    label, answered, _, seen, filters, maps = trainer.predict(photo, choice, api_name="/classify_cifar10")
    assert len(label["confidences"]) == 3 and seen and filters and maps and "trained in this session" in answered
    with pytest.raises(Exception, match="No model has been trained in this session yet"):
        stranger.predict(photo, choice, api_name="/classify_cifar10")
    _, answered, *_ = stranger.predict(photo, "default model", api_name="/classify_cifar10")
    assert answered.startswith("**Answering: the embedded classifier")


def test_browsing_the_embedded_models_errors_on_a_test_set_other_than_its_own(client):
    # The app under test serves the tiny synthetic test set, not the one the embedded predictions were recorded on.
    with pytest.raises(Exception, match="not the one the model's predictions were recorded on"):
        client.predict("cat", "dog", "default model", api_name="/browse_confusion")

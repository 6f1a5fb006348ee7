"""The Your images tab: what a photo set is refused for, training on it, and where it lives."""

import io
import re
import threading
import time
import zipfile

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image, ImageDraw

from demo import panel, photo_sets, views
from demo.tabs import your_images
from serving import jobs
from demo.photo_sets import PhotoSetError
from training.__main__ import main
from handlers import Session, last
from training.datasets import _registered, forget_dataset, get_dataset


def shape_photo(kind: int, rng: np.random.Generator) -> bytes:
    """A JPEG of a coloured circle (kind 0) or square (kind 1) on a random background."""
    image = Image.new("RGB", (96, 72), tuple(int(v) for v in rng.integers(0, 255, 3)))
    x, y = (int(v) for v in rng.integers(4, 30, 2))
    draw = ImageDraw.Draw(image)
    (draw.ellipse if kind == 0 else draw.rectangle)((x, y, x + 36, y + 36), fill=(250, 40, 40) if kind == 0 else (40, 40, 250))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def make_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED, folders=()) -> str:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for folder in folders:
            archive.writestr(folder, b"")
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def shapes_zip(path, per_class: int = 6, top: str = "my-photos/") -> str:
    rng = np.random.default_rng(0)
    members = {f"{top}{name}/{i}.jpg": shape_photo(kind, rng) for kind, name in enumerate(("circle", "square")) for i in range(per_class)}
    return make_zip(path, members)


def test_a_zip_of_a_folder_of_classes_is_read_with_what_it_skipped(tmp_path):
    path = shapes_zip(tmp_path / "a.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("my-photos/circle/notes.txt", b"hello")
        archive.writestr("my-photos/square/broken.jpg", b"not a jpeg")
    photos = photo_sets.from_zip(path)
    assert photos.classes == ("circle", "square") and photos.images.shape == (12, 3, 224, 224)
    assert dict(photos.skipped) == {
        "my-photos/circle/notes.txt": "not a photo (PNG, JPEG, BMP or WebP)",
        "my-photos/square/broken.jpg": "That file is not an image this app can read (UnidentifiedImageError). Upload a PNG, JPEG, GIF, BMP or WebP photo.",
    }
    summary = photos.summary()
    assert "Took 12 photos" in summary and "circle 6, square 6" in summary and "Skipped 2 file(s)" in summary


@pytest.mark.parametrize(
    "members, message",
    [
        ({"../evil/a.jpg": b"x", "b/a.jpg": b"x"}, "leaves its folder"),
        ({"/etc/a.jpg": b"x"}, "leaves its folder"),
        ({"a/deeper/x.jpg": b"x", "b/y.jpg": b"x"}, "nested folder"),
        ({"x.jpg": b"x", "b/y.jpg": b"x"}, "at the top level"),
        ({f"cats/{i}.jpg": b"x" for i in range(6)}, "Give 2 to 10 classes"),
        ({**{f"Cat/{i}.jpg": b"x" for i in range(6)}, **{f"cat/{i}.jpg": b"x" for i in range(6)}}, "same name"),
        ({f"c{i}/x.jpg": b"x" for i in range(11)}, "Give 2 to 10 classes"),
        ({f"c{i % 2}/{i}.jpg": b"x" for i in range(601)}, "at most 600"),
    ],
)
def test_bad_zips_are_refused_with_a_reason(tmp_path, members, message):
    with pytest.raises(PhotoSetError, match=message):
        photo_sets.from_zip(make_zip(tmp_path / "bad.zip", members))


def test_a_zip_bomb_and_an_oversized_zip_are_refused_unread(tmp_path, monkeypatch):
    bomb = make_zip(tmp_path / "bomb.zip", {"a/x.jpg": b"\0" * 5_000_000, "b/y.jpg": b"x"})
    with pytest.raises(PhotoSetError, match="zip bomb"):
        photo_sets.from_zip(bomb)
    monkeypatch.setattr(photo_sets, "MAX_TOTAL_BYTES", 1000)
    with pytest.raises(PhotoSetError, match="more than 0 MB"):
        photo_sets.from_zip(shapes_zip(tmp_path / "big.zip"))


def test_empty_class_folders_and_too_few_photos_are_named(tmp_path):
    rng = np.random.default_rng(1)
    members = {f"a/{i}.jpg": shape_photo(0, rng) for i in range(5)} | {f"b/{i}.jpg": shape_photo(1, rng) for i in range(5)}
    with pytest.raises(PhotoSetError, match="empty: c"):
        photo_sets.from_zip(make_zip(tmp_path / "empty.zip", members, folders=("c/",)))
    with pytest.raises(PhotoSetError, match=r"at least 5 readable photos; too few in: b \(4\)"):
        photo_sets.from_zip(make_zip(tmp_path / "few.zip", {k: v for k, v in members.items() if k != "b/0.jpg"}))
    (tmp_path / "nothing.zip").write_text("not a zip")
    with pytest.raises(PhotoSetError, match="not a .zip"):
        photo_sets.from_zip(str(tmp_path / "nothing.zip"))


def test_named_classes_of_uploaded_photos(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for kind, name in enumerate(("circle", "square")):
        paths = []
        for i in range(5):
            (tmp_path / f"{name}{i}.jpg").write_bytes(shape_photo(kind, rng))
            paths.append(str(tmp_path / f"{name}{i}.jpg"))
        rows.append((name, paths))
    assert photo_sets.from_photos(rows + [("", None)]).classes == ("circle", "square")
    with pytest.raises(PhotoSetError, match="same name"):
        photo_sets.from_photos([("circle", rows[0][1]), ("Circle ", rows[1][1])])
    with pytest.raises(PhotoSetError, match="Every class needs a name"):
        photo_sets.from_photos([("circle", rows[0][1]), ("", rows[1][1])])


def run_to_the_end(*args):
    *_, last = your_images.train_your_images(*args, progress=lambda *a, **k: None)
    return last


def test_training_on_a_zip_classifies_shows_mistakes_downloads_and_publishes(tmp_path, imagenet_weights):
    loss, accuracy, table, status, session, dataset, instrument, sentences = run_to_the_end(shapes_zip(tmp_path / "p.zip", per_class=8), your_images.NETWORKS[0], 1, 0)
    try:
        assert list(table["arm"]) == ["feature extraction", "fine tuning"] and all(table["this run"].str.match(r"\d+\.\d\d%, "))
        # Inside the network: feature extraction's backbone did not move at all; fine tuning's did.
        assert "Feature extraction: the backbone moved 0 (frozen)." in sentences and "Fine tuning: the first conv layer moved" in sentences
        moved = {(layer, arm): value for layer, value, arm in instrument.value["data"] if value is not None}
        assert moved[("conv 1", "feature extraction")] == 0 < moved[("conv 1", "fine tuning")] and moved[("fc 3", "feature extraction")] > 0
        assert list(table.columns) == ["arm", "this run", "train time (s)", "images/s"]  # no report or reference figure for your photos
        assert "Took 16 photos" in status and "Done on" in status
        assert session["spec"].classes == ("circle", "square") and set(session["models"]) == {"feature extraction", "fine tuning"}
        assert get_dataset(dataset).train_size == 12  # 2 of each class's 8 held out
        (tmp_path / "new.jpg").write_bytes(shape_photo(0, np.random.default_rng(9)))
        probabilities = your_images.classify_your_images(str(tmp_path / "new.jpg"), "fine tuning", session)
        assert set(probabilities) == {"circle", "square"} and sum(probabilities.values()) == pytest.approx(1)
        # Where each arm found its evidence, side by side; the endpoint's map at the network's input size.
        picture, words = your_images.why_your_images(np.asarray(Image.open(tmp_path / "new.jpg").convert("RGB")), "fine tuning", session)
        width, height = Image.open(picture["value"]).size
        assert round(width / height) == 2 and words.startswith("**Where it found “")
        probabilities, found = your_images.explain_your_images(str(tmp_path / "new.jpg"), "fine tuning", session)
        assert set(probabilities) == {"circle", "square"} and (found.mode, found.size) == ("L", (224, 224))
        wrong = your_images.wrong_photos("feature extraction", session)
        assert all(image.shape == (224, 224, 3) and re.fullmatch(r"(circle → square|square → circle) \d+%", caption) for image, caption in wrong)
        archive = your_images.download_models(session)
        unpacked = tmp_path / "download"
        zipfile.ZipFile(archive).extractall(unpacked)
        assert main(["publish", "--repo-id", "student/shapes", "--experiment", "your-images", "--from", str(unpacked), "--dry-run", str(tmp_path / "card")]) == 0
        assert "fine tuning" in (tmp_path / "card" / "README.md").read_text()
    finally:
        your_images.forget_photos(dataset)
    assert dataset not in _registered


def test_without_imagenet_weights_the_tab_says_how_and_offers_the_small_cnn(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(Exception, match="small CNN from scratch"):
        run_to_the_end(shapes_zip(tmp_path / "p.zip"), your_images.NETWORKS[0], 1, 0)
    loss, accuracy, table, status, session, dataset, _, _ = run_to_the_end(shapes_zip(tmp_path / "q.zip"), your_images.NETWORKS[1], 1, 0)
    forget_dataset(dataset)
    assert list(table["arm"]) == ["feature extraction", "fine tuning", "small CNN"] and set(session["models"]) == {"small CNN"}
    assert loss.colors_in_legend == accuracy.colors_in_legend == ["small CNN"]  # no legend entry for an arm not trained
    # The Model choice offers the one model there is and moves to it, and stays where a chosen one was trained.
    offered = your_images.trained_choice("fine tuning", session)
    assert (offered["choices"], offered["value"], offered["visible"]) == (["small CNN"], "small CNN", True)
    assert your_images.trained_choice("small CNN", session)["value"] == "small CNN"


def test_photos_of_the_oldest_session_go_first_and_its_model_still_classifies(tmp_path, monkeypatch):
    monkeypatch.setattr(photo_sets, "MAX_SESSIONS_HELD", 2)
    *_, session, dataset, _, _ = run_to_the_end(shapes_zip(tmp_path / "p.zip"), your_images.NETWORKS[1], 1, 0)
    others = [photo_sets.register(photo_sets.from_zip(shapes_zip(tmp_path / f"{i}.zip")), f"other-{i}", 0).name for i in range(2)]
    try:
        assert dataset not in _registered and all(name in _registered for name in others)
        with pytest.raises(Exception, match="no longer held.*press Train"):
            your_images.wrong_photos("small CNN", session)
        (tmp_path / "new.jpg").write_bytes(shape_photo(0, np.random.default_rng(9)))
        assert set(your_images.classify_your_images(str(tmp_path / "new.jpg"), "small CNN", session)) == {"circle", "square"}
    finally:
        for name in others:
            photo_sets.forget(name)


def test_nothing_trained_and_bad_settings_get_clear_messages(tmp_path):
    (tmp_path / "x.jpg").write_bytes(shape_photo(0, np.random.default_rng(0)))
    with pytest.raises(Exception, match="Nothing has been trained in this session yet"):
        your_images.classify_your_images(str(tmp_path / "x.jpg"), "fine tuning", None)
    with pytest.raises(Exception, match="Upload a .zip"):
        run_to_the_end(None, your_images.NETWORKS[0], 1, 0)
    with pytest.raises(Exception, match="epochs must be at most 10"):
        run_to_the_end(shapes_zip(tmp_path / "p.zip"), your_images.NETWORKS[0], 11, 0)


def test_one_client_trains_and_classifies_and_another_session_cannot_reach_it(app_url, tmp_path):
    student, stranger = Client(app_url, verbose=False), Client(app_url, verbose=False)
    outputs = student.predict(handle_file(shapes_zip(tmp_path / "p.zip")), your_images.NETWORKS[1], 1, 0, api_name="/train_your_images")
    assert "Took 12 photos" in next(o for o in outputs if isinstance(o, str) and "Took" in o)
    (tmp_path / "new.jpg").write_bytes(shape_photo(1, np.random.default_rng(3)))
    label = student.predict(handle_file(str(tmp_path / "new.jpg")), "small CNN", api_name="/classify_your_images")
    assert {c["label"] for c in label["confidences"]} == {"circle", "square"}
    with pytest.raises(Exception, match="Nothing has been trained in this session yet"):
        stranger.predict(handle_file(str(tmp_path / "new.jpg")), "small CNN", api_name="/classify_your_images")


def test_closing_the_session_lets_its_photos_go(app_url, tmp_path, monkeypatch):
    # A browser holds a heartbeat stream open for as long as its tab is open; when it closes, the
    # server ends the session at its next beat (every GRADIO_HEARTBEAT_INTERVAL seconds).
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.2")
    student = Client(app_url, verbose=False)
    name = photo_sets.dataset_name(student.session_hash)
    with httpx.stream("GET", f"{app_url}gradio_api/heartbeat/{student.session_hash}", timeout=10) as heartbeat:
        beats = heartbeat.iter_lines()  # held: a dropped line iterator closes the stream
        next(beats)
        student.predict(handle_file(shapes_zip(tmp_path / "p.zip")), your_images.NETWORKS[1], 1, 0, api_name="/train_your_images")
        # A photo of its own: a picture another session also shows (a plain colour's) would stay for that one.
        Image.fromarray(np.random.default_rng(11).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
        student.predict(handle_file(str(tmp_path / "noise.png")), "default model", api_name="/classify_cifar10")
        answered = list(views._session_files[student.session_hash])
        assert name in _registered and answered and all(path.exists() for path in answered)
    deadline = time.monotonic() + 10
    while name in _registered and time.monotonic() < deadline:
        time.sleep(0.1)
    assert name not in _registered
    assert not any(path.exists() for path in answered)  # the pictures of its answers went with it


def test_stop_reports_how_far_a_run_on_your_photos_got_and_its_stream_ends_on_that_report(tmp_path, monkeypatch):
    released, original = threading.Event(), jobs.fetch_data

    def held_at_its_data(configs, poll_s):  # the run waits at its data until the test has pressed Stop
        while not released.wait(0.05):
            yield "Waiting for the test"
        yield from original(configs, poll_s)

    monkeypatch.setattr(jobs, "fetch_data", held_at_its_data)
    photographer = Session("photographer")
    stream = your_images.train_your_images(shapes_zip(tmp_path / "p.zip"), your_images.NETWORKS[1], 1, 0, progress=lambda *a, **k: None, request=photographer)
    *_, dataset = next(stream)
    try:
        table, status = panel.stop_run(photographer)
        released.set()
        assert status.startswith("**Stopped**") and set(table["this run"]) <= {"—", "stopped before its first step"}
        *_, last_status, _, _, _, _ = last(stream)
        assert last_status.endswith(status) and "Took 12 photos" in last_status
        assert panel.stop_run(photographer) == (gr.skip(), gr.skip())  # nothing left to stop
    finally:
        forget_dataset(dataset)


def test_the_class_boxes_photos_reach_train_as_paths_and_are_counted():
    """A class's photo box is a gallery (thumbnails of what was given): it gives (path, caption)
    pairs, which Train's rows take as paths; its count says how many it holds."""
    rows = your_images.collect_rows("cats", [("/tmp/a.jpg", None), ("/tmp/b.jpg", None)], "dogs", None)
    assert rows == ["cats", ["/tmp/a.jpg", "/tmp/b.jpg"], "dogs", []]
    assert (your_images.photos_given(rows[1]), your_images.photos_given([]), your_images.photos_given(["x"])) == ("2 photos", "", "1 photo")

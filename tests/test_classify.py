"""Classifying photos: uploads of every kind, the CIFAR-10 and ants-vs-bees classifiers, the confusion matrix and its cells."""

import gc
import io
import json
import time
import weakref
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image
from safetensors.torch import load_file

from demo import classifiers, confusion, first_layer, photo_sets, uploads, views
from demo.tabs import final_cnn, transfer
from serving import sessions
from serving.model_store import HeldModels
from models import AlexNetTransfer, TeachingCNN, create_model
from training.datasets import CIFAR10_CLASSES, CIFAR10_DATASET
from handlers import SMALL, last


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
    probabilities, answered, photo, seen, filters, maps = final_cnn.classify_cifar10(str(CAT_PHOTO), final_cnn.DEFAULT, None)
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
    assert sum(map(sum, classifiers.default_classifier().confusion)) == 10_000
    assert Image.open(final_cnn.default_confusion()).size == (confusion.SIDE_PX, confusion.SIDE_PX)  # a phone's width


def test_an_image_shown_is_written_once_and_never_rewritten_under_a_reader(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "SHOWN_DIR", tmp_path)
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = Path(views.image_file(pixels))
    written = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert views.image_file(pixels.copy()) == str(path) and path.stat().st_mtime_ns == written
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    assert views.image_file(pixels[::-1].copy()) != str(path)


def test_a_models_pictures_live_as_long_as_the_model_however_many_answers_come_after(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "SHOWN_DIR", tmp_path)
    monkeypatch.setattr(views, "ANSWER_FILES", 3)
    model = torch.nn.Linear(1, 1)
    filters = Path(views.image_file(np.zeros((4, 4, 3), np.uint8), owner=model))
    answers = [Path(views.image_file(np.full((4, 4, 3), (value % 256, value // 256, 1), np.uint8), owner="a student")) for value in range(1, 2001)]
    # Two thousand answers later the model's picture is still there to hand out; of the
    # session's own answers it keeps its last three.
    assert filters.exists() and sorted(tmp_path.glob("*.png")) == sorted([filters, *answers[-3:]])
    del model
    gc.collect()
    assert not filters.exists()


def test_a_sessions_pictures_go_when_it_ends_or_falls_idle(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "SHOWN_DIR", tmp_path)
    first = Path(views.photo_file(Image.new("RGB", (600, 300), (200, 10, 10)), "first"))
    second = Path(views.photo_file(Image.new("RGB", (60, 30), (10, 200, 10)), "second"))
    shared = Path(views.image_file(np.ones((4, 4, 3), np.uint8), owner="second"))
    assert Image.open(first).size == (512, 256) and views.image_file(np.ones((4, 4, 3), np.uint8), owner="first") == str(shared)
    views.release("first")  # the first session's tab closed
    assert not first.exists() and second.exists() and shared.exists()  # still shown to the second
    monkeypatch.setattr(sessions, "IDLE_S", 0)
    views.image_file(np.full((4, 4, 3), 9, np.uint8), owner="third")  # any answer sweeps the idle sessions
    assert not second.exists() and not shared.exists()


def test_the_first_layer_filters_are_drawn_once_per_model_and_photos_are_jpegs(monkeypatch):
    monkeypatch.delenv("CIFAR10_MODEL", raising=False)
    monkeypatch.setattr(classifiers, "cifar10_model", uploads.ConfiguredModel("CIFAR10_MODEL", classifiers.cifar10_model.model_classes, default=classifiers.cifar10_model.default))
    drawn = []
    monkeypatch.setattr(first_layer, "tiles", lambda maps, **kwargs: drawn.append(maps.shape) or np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(first_layer, "_filters_shown", weakref.WeakKeyDictionary())
    for _ in range(3):
        _, _, photo, _, filters, _ = final_cnn.classify_cifar10(str(CAT_PHOTO), final_cnn.DEFAULT, None)
    weights = classifiers.default_classifier().model.features[0].conv.weight
    assert drawn.count(weights.shape) == 1 and len(drawn) == 4  # the filters once, the photo's feature maps every time
    assert Image.open(photo).format == "JPEG" and Image.open(filters).format == "PNG"


def test_classifying_mirrors_the_photo_when_the_accuracy_was_measured_so():
    model = create_model("cnn-tiny").eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    plain, both = uploads.classify(model, image, CIFAR10_DATASET), uploads.classify(model, image, CIFAR10_DATASET, flip=True)
    assert plain != both and both == pytest.approx(uploads.classify(model, mirrored, CIFAR10_DATASET, flip=True), abs=1e-6)


def test_a_session_model_classifies_and_its_confusion_cells_show_their_test_images(tiny_data, no_default_model, tmp_path):
    *_, session, per_class, download, choice, _, _ = last(final_cnn.TAB.handler(False, **SMALL))
    assert choice == final_cnn.SESSION and [run["label"] for run in session["results"]["runs"]] == ["final"]
    probabilities, answered, *_ = final_cnn.classify_cifar10(save(Image.new("RGB", (50, 40), (200, 10, 10)), tmp_path / "red.png"), choice, session)
    assert len(probabilities) == 10 and "trained in this session (quick preset)" in answered
    picture, summary = final_cnn.show_confusion(choice, session)
    recorded = session["results"]["runs"][0]["confusion"]
    assert Path(picture).is_file() and "trained in this session" in summary
    assert sum(map(sum, recorded)) == 60  # the tiny test set: 6 images per class
    for true_class, predicted_class in (("cat", "cat"), ("cat", "dog")):
        gallery, note, picture = final_cnn.browse_cell(true_class, predicted_class, choice, session)
        count = recorded[CIFAR10_CLASSES.index(true_class)][CIFAR10_CLASSES.index(predicted_class)]
        assert len(gallery) == count and note.startswith(f"**{count}** test images of a cat")
        short = final_cnn.SHORT_NAMES[CIFAR10_CLASSES.index(predicted_class)]  # the matrix's and the pickers' name
        assert all(np.asarray(Image.open(image)).shape == (128, 128, 3) and caption.endswith(short) for image, caption in gallery)
        confidences = [int(caption.split("%")[0]) for _, caption in gallery]
        assert confidences == sorted(confidences, reverse=True)
        assert Image.open(picture).size == (confusion.SIDE_PX, confusion.SIDE_PX)
    with pytest.raises(gr.Error, match="classes must be CIFAR-10's"):
        final_cnn.browse_cell("cat", "lion", choice, session)


def test_a_click_on_the_confusion_matrix_picks_its_cell():
    """The picture's axes sit at fixed fractions of it: a pixel inside a cell names that cell, and
    the class names around the matrix name none."""
    left, bottom, width, height = confusion.AXES
    side = confusion.SIDE_PX

    def centre(row: int, column: int) -> list[float]:
        return [side * (left + width * (column + 0.5) / 10), side * (1 - bottom - height + height * (row + 0.5) / 10)]

    click = lambda x, y: final_cnn.select_cell(gr.SelectData(None, {"index": [x, y], "value": None}))  # noqa: E731
    assert click(*centre(3, 5)) == ("cat", "dog")
    assert click(*centre(9, 0)) == ("truck", "airplane")
    assert all(isinstance(value, type(gr.skip())) for value in click(5, centre(3, 0)[1]))  # the class names


def test_the_final_cnn_trains_the_report_recipe_beside_it_only_when_asked(tiny_data):
    *_, session, _, _, _, _, _ = last(final_cnn.TAB.handler(True, **SMALL))
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
    matrix = classifiers.confusion(classifiers.default_classifier())
    assert [row[5] for row in matrix] == [3, 1, 0, 0, 0, 3, 0, 0, 0, 0] and sum(map(sum, matrix)) == 30
    assert Path(final_cnn.default_confusion()).is_file()  # drawn without the dataset
    assert f"({26 / 30:.2%} on CIFAR-10's test set" in final_cnn.default_summary()


def test_the_page_opens_on_the_starting_cells_images_or_says_why_there_are_none(tiny_data, tmp_path, monkeypatch):
    from conftest import dog_classifier
    from training.datasets import load_cifar10

    cats = int((load_cifar10("test").labels == CIFAR10_CLASSES.index("cat")).sum())
    monkeypatch.setenv("CIFAR10_MODEL", str(dog_classifier(tmp_path / "dogs", load_cifar10("test").labels)))
    monkeypatch.setattr(classifiers, "cifar10_model", uploads.ConfiguredModel("CIFAR10_MODEL", TeachingCNN))
    assert final_cnn.STARTING_CELL == ("cat", "dog")
    gallery, note = final_cnn.starting_cell()
    assert len(gallery) == cats and note == f"**{cats}** test images of a cat called dog. Click one to see where the models found its class."

    # Without the test images, the note says what is missing, and a page load downloads nothing.
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.setattr("training.sources.urlopen", lambda *args, **kwargs: pytest.fail("a page load downloaded"))
    gallery, note = final_cnn.starting_cell()
    assert gallery == [] and note.startswith("**No test images to show yet.** CIFAR-10 was not found") and "Set DATA_DIR" in note


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


def test_the_ants_bees_page_says_on_the_page_why_it_cannot_classify_and_shows_the_photo(tmp_path, monkeypatch, imagenet_weights):
    monkeypatch.setattr(transfer.ants_bees_model, "_loaded", True)  # no ANTS_BEES_MODEL, and nothing trained
    monkeypatch.setattr(transfer.ants_bees_model, "model", None)
    photo = save(Image.new("RGB", (300, 200), (250, 200, 0)), tmp_path / "bee.png")
    label, note, shown = transfer.classify_on_page(photo, "fine tuning", None)
    assert label is None and note.startswith("**Cannot classify yet.** No ants-vs-bees model yet: train one above")
    assert Image.open(shown).size == (300, 200)  # the photo itself, not its file name
    (tmp_path / "notes.png").write_text("not an image")
    label, note, shown = transfer.classify_on_page(str(tmp_path / "notes.png"), "fine tuning", None)
    assert label is None and shown is None and "not an image this app can read" in note
    session = {"models": HeldModels({"fine tuning": AlexNetTransfer(mode="fine_tuning")})}
    label, note, _ = transfer.classify_on_page(photo, "fine tuning", session)
    assert set(label) == {"ants", "bees"} and note == ""


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




def test_a_photo_sent_to_the_app_leaves_no_copy_of_itself_on_disk(app_url, tmp_path):
    from gradio.utils import get_upload_folder

    name = f"photo-{time.time_ns()}.png"
    save(Image.new("RGB", (64, 48), (200, 10, 10)), tmp_path / name)
    client = Client(app_url, verbose=False)
    client.predict(handle_file(str(tmp_path / name)), final_cnn.DEFAULT, api_name="/classify_cifar10")
    assert not list(Path(get_upload_folder()).rglob(name))  # the upload went once it was read
    assert (tmp_path / name).exists()  # a file of the caller's own is not the server's to delete


def test_a_large_jpeg_is_decoded_at_a_fraction_of_its_size(tmp_path):
    path = save(Image.new("RGB", (4000, 3000), (10, 200, 10)), tmp_path / "large.jpg", quality=90)
    image = uploads.open_upload(path)
    assert image.size == (1000, 750)  # a quarter of each side: still over the 512 an answer shows


def test_a_set_of_photos_over_the_decoding_budget_is_refused_with_what_to_send(monkeypatch):
    monkeypatch.setattr(photo_sets, "MAX_MEGAPIXELS", 0.05)
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), (1, 2, 3)).save(buffer, "PNG")
    photos = {name: [(f"{i}.png", buffer.getvalue()) for i in range(5)] for name in ("a", "b")}
    with pytest.raises(photo_sets.PhotoSetError, match="more than the 0.05 megapixels one upload may decode here"):
        photo_sets.decode(photos)


def test_downloads_live_in_one_folder_bounded_in_size(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "DOWNLOADS_DIR", tmp_path)
    monkeypatch.setattr(views, "DOWNLOADS_MAX_BYTES", 2500)
    monkeypatch.setattr(views, "DOWNLOAD_COPY_S", 0)
    folders = []
    for _ in range(4):
        folders.append(views.download_folder("model-"))
        (folders[-1] / "model.zip").write_bytes(b"x" * 1000)
        time.sleep(0.01)
    views.download_folder("model-")
    assert [folder.exists() for folder in folders] == [False, False, True, True]


def test_students_who_send_the_same_photo_at_once_are_both_answered(monkeypatch):
    from gradio.utils import get_upload_folder

    # Gradio names an upload by its content: two students sending one photo share its file.
    folder = Path(get_upload_folder()) / f"same-photo-{time.time_ns()}"
    folder.mkdir(parents=True)
    shared = save(Image.new("RGB", (40, 30), (5, 100, 200)), folder / "photo.png")
    first, second = uploads.open_upload(shared), uploads.open_upload(shared)
    assert first.size == second.size == (40, 30) and not Path(shared).exists()
    monkeypatch.setattr(uploads, "RECENT_S", -1)  # long after: nothing of it is kept
    with pytest.raises(gr.Error, match="no longer on the server"):
        uploads.open_upload(shared)

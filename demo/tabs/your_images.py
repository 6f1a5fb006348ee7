"""Tab: your own images. A student gives 2–10 classes of photos (a .zip with a folder per class,
or a name and photos per class), and the report's transfer experiment runs on them: feature
extraction vs fine tuning of AlexNet, paired, with live curves. Then classify a new photo, see
the validation photos it got wrong, and download the models (a folder `publish` reads).
Idea: Teachable Machine, with the paired comparison and real numbers beside it."""

import json
import shutil
from dataclasses import replace

import gradio as gr
import torch

from demo import photo_sets
from serving.classroom import answer_first
from demo.instruments import Drawing, InstrumentView
from demo.panel import RunButtons, training_updates
from demo.photo_sets import MAX_CLASSES, MIN_CLASSES, MIN_PHOTOS_PER_CLASS, PhotoSetError
from serving.model_store import dropped_message
from demo.uploads import Refusal, classify, consume, image_upload, open_upload
from demo.views import answered_on_page, curves, download_folder, line_plots, plot_series, results_table, series_of
from demo.why import explained_upload, trained_arms, why_outputs, why_photo
from models import WeightsUnavailableError
from models.alexnet import load_backbone
from training.config import requested
from training.datasets import load_splits
from training.evaluation import predict
from training.experiments import get_experiment
from training.runner import folder_name

QUESTION = "Can a network learn your own classes from a few dozen photos each?"
IDEA = f"""AlexNet already knows 1,000 kinds of things from ImageNet, so it only has to learn which of its
features tell *your* classes apart. Give {MIN_CLASSES}–{MAX_CLASSES} classes with at least {MIN_PHOTOS_PER_CLASS} photos each (30 is
better), press **Train**, then try a new photo."""
EXPLANATION = """
A fifth of each class is held out for validation (the seed decides which), and the two ways of
transfer learning train side by side on the same batches: *feature extraction* (the backbone frozen,
only the last layer learns) and *fine tuning* (every layer learns, slowly). Then classify a new photo,
look at the validation photos it got wrong, and download the model.

Your photos are deleted from the server's disk as soon as they are read. Decoded, they stay in this
browser session's memory for training and for the mistakes gallery, and go when you close the page
(or an hour after, if the page could not say goodbye).
"""
NETWORKS = ("AlexNet (ImageNet weights)", "small CNN from scratch")
SCRATCH_ARM = "small CNN"  # the arm of the network from scratch; short, so that three arms' legend fits a phone
EXPERIMENT = get_experiment("your-images")
SERIES = plot_series(EXPERIMENT, (SCRATCH_ARM,))
INSTRUMENT = InstrumentView(EXPERIMENT.name, SERIES)
MAX_EPOCHS = 10
ROWS = MAX_CLASSES  # photo rows laid out; "Add a class" shows the next hidden one


def photos_from(archive, rows: list) -> photo_sets.PhotoSet:
    """The photos of the zip if one was given, else of the named rows (name, photos, name, ...)."""
    if archive:
        try:
            return photo_sets.from_zip(archive)
        finally:
            consume(archive)  # read into memory: no copy stays on disk
    named = list(zip(rows[0::2], rows[1::2]))
    if not any(paths for _, paths in named):
        raise PhotoSetError("Upload a .zip with one folder per class, or give each class a name and photos.")
    return photo_sets.from_photos(named)


def checked_settings(network, epochs, seed) -> tuple[str, int, int]:
    """The settings, bounded, or a gr.Error that says what is allowed."""
    try:
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {NETWORKS}, got {network!r}")
        epochs, seed = requested("epochs", epochs), requested("seed", seed)
        if epochs > MAX_EPOCHS:
            raise ValueError(f"epochs must be at most {MAX_EPOCHS} here, got {epochs}")
    except ValueError as error:
        raise Refusal(str(error)) from None
    return network, epochs, seed


def session_arms(session: str, network=NETWORKS[0], epochs=3, seed=0) -> list:
    """The arms on this session's photos (registered before, so that a GPU request is priced on them)."""
    configs = EXPERIMENT.arms("quick", seed=seed, dataset=photo_sets.dataset_name(session), epochs=epochs)
    if network == NETWORKS[1]:
        # Without ImageNet's weights: the smallest teaching CNN, learning from nothing but your photos.
        return [replace(configs[0], label=SCRATCH_ARM, model="cnn-tiny", model_overrides={}, init="he", lr=0.01)]
    return configs


def read_and_train(archive, network, epochs, seed, rows, progress, request, on_cpu: bool):
    """Check the settings, read and hold the photos in this process (the mistakes gallery reads
    them here, and the session's end forgets them here), and train on them where runs train."""
    network, epochs, seed = checked_settings(network, epochs, seed)
    try:
        photos = photos_from(archive, rows or [])
    except PhotoSetError as error:
        raise Refusal(str(error)) from None
    session = request.session_hash if request and request.session_hash else "api"
    spec = photo_sets.register(photos, session, seed)
    if network == NETWORKS[0]:
        try:
            load_backbone("IMAGENET1K_V1")
        except WeightsUnavailableError as error:
            raise Refusal(f"{error}\n\nOr choose \"{NETWORKS[1]}\" under Network: it needs no downloaded weights.") from None
    summary, drawing = photos.summary(), Drawing(INSTRUMENT)
    arms = session_arms(session, network, epochs, seed)
    # The legends name the arms this run trains (the small CNN, or the two AlexNet arms), in the
    # colours every series keeps.
    trained = [series_of(config.label, SERIES) for config in arms]
    for update, result in training_updates(EXPERIMENT, arms, "quick", progress, request, on_cpu):
        if update.finished:
            result = {**result, "spec": spec}  # classifying needs its classes, not the photos
        table = results_table(EXPERIMENT, update.recorder, stopped=update.stopped)
        loss, accuracy = curves(EXPERIMENT, update.recorder, SERIES)
        plots = (gr.LinePlot(loss, colors_in_legend=trained), gr.LinePlot(accuracy, colors_in_legend=trained))
        yield *plots, table, f"{summary}\n\n{update.status}", result, spec.name, *drawing.frame(update)


def train_your_images(archive=None, network=NETWORKS[0], epochs=3, seed=0, rows=None, progress=gr.Progress(), request: gr.Request = None):
    """Train feature extraction and fine tuning of AlexNet (or a small CNN) on your photos, paired."""
    yield from read_and_train(archive, network, epochs, seed, rows, progress, request, on_cpu=False)


def train_your_images_on_cpu(archive=None, network=NETWORKS[0], epochs=3, seed=0, rows=None, progress=gr.Progress(), request: gr.Request = None):
    """The same, on this host's CPU: the one-click fallback when ZeroGPU refuses a GPU."""
    yield from read_and_train(archive, network, epochs, seed, rows, progress, request, on_cpu=True)


def chosen_model(arm: str, session: dict | None):
    if not session:
        raise Refusal("Nothing has been trained in this session yet: give your photos and press Train.")
    models = session["models"]
    if models.dropped:
        raise Refusal(dropped_message())
    if arm not in models:
        arm = next(iter(models))
    return arm, models[arm]


@answer_first
def classify_your_images(image_path=None, arm="fine tuning", session=None):
    """Your classes' probabilities for a photo, from the model trained in this session."""
    image = open_upload(image_path)
    _, model = chosen_model(arm, session)
    return classify(model, image, session["spec"])


def classify_on_page(image_path=None, arm="fine tuning", session=None, request: gr.Request = None) -> tuple:
    """The page's call: the prediction, a note and the photo itself, previewed beside it
    (demo.views.answered_on_page)."""
    return answered_on_page(image_path, request, lambda image: classify(chosen_model(arm, session)[1], image, session["spec"]))


@answer_first
def why_your_images(photo=None, arm="fine tuning", session=None, request: gr.Request = None) -> tuple:
    """Where each model this session trained found the evidence for the answer to the photo shown."""
    spec = session["spec"] if session else None
    return why_photo(photo, spec, lambda: chosen_model(arm, session)[1], trained_arms(session, EXPERIMENT), request.session_hash if request else None)


@answer_first
def explain_your_images(image_path=None, arm="fine tuning", session=None):
    """Your classes' probabilities and where the chosen model found its answer's evidence: a
    grayscale map at the network's input size."""
    return explained_upload(image_path, lambda: (chosen_model(arm, session)[1], False, False), session["spec"] if session else None)


def trained_choice(arm="fine tuning", session=None):
    """After a run, the Model choice offers the arms this run trained, and only those (the small
    CNN alone trains neither AlexNet arm), on the chosen one where it was trained."""
    if not session or session["models"].dropped:
        return gr.skip()
    trained = list(session["models"])
    return gr.update(choices=trained, value=arm if arm in trained else trained[0], visible=True)


def wrong_photos(arm="fine tuning", session=None) -> list:
    """The validation photos the chosen model got wrong, most confident first, captioned."""
    arm, model = chosen_model(arm, session)
    spec = session["spec"]
    try:
        validation = load_splits(spec.name)[1]
    except ValueError:
        raise Refusal(
            "This session's photos are no longer held (the server keeps the photos of the "
            f"{photo_sets.MAX_SESSIONS_HELD} sessions that sent them last): press Train to send them again."
        ) from None
    predicted, confidence = predict(model, validation, next(model.parameters()).device, "fp32")
    wrong = torch.nonzero(predicted != validation.labels).flatten()
    wrong = wrong[confidence[wrong].argsort(descending=True)]
    classes = spec.classes
    return [
        (validation.images[i].permute(1, 2, 0).numpy(), f"{classes[validation.labels[i]]} → {classes[predicted[i]]} {confidence[i]:.0%}")
        for i in wrong.tolist()
    ]


def download_models(session=None) -> str:
    """A .zip of this session's trained models and results.json: a folder `python -m training
    publish --experiment your-images --from DIR` reads."""
    if not session:
        raise Refusal("Nothing has been trained in this session yet.")
    if session["models"].dropped:
        raise Refusal(dropped_message())
    folder = download_folder("your-images-")
    for label, model in session["models"].items():
        model.save_pretrained(folder / "models" / folder_name(label))
    (folder / "models" / "results.json").write_text(json.dumps(session["results"], indent=1))
    return shutil.make_archive(str(folder / "your-images"), "zip", folder / "models")


def forget_photos(dataset: str | None) -> None:
    """The session's State delete callback, which Gradio calls an hour after the session ends:
    its photos leave the registry with it, if `forget_session` has not already let them go."""
    if dataset:
        photo_sets.forget(dataset)


def collect_rows(*boxes) -> list:
    """The class rows' values (name, photo paths, name, ...), kept in a State for Train: the public
    endpoint then takes just a zip and the settings. A photo box (a gallery) gives (path, caption)
    pairs."""
    names, galleries = boxes[0::2], boxes[1::2]
    paths = [[path for path, _caption in gallery or []] for gallery in galleries]
    return [value for pair in zip(names, paths) for value in pair]


def add_class(shown: int) -> list:
    """Show one more class row."""
    shown = min(ROWS, shown + 1)
    return [shown, *[gr.update(visible=i < shown) for i in range(ROWS)]]


def photos_given(files) -> str:
    n = len(files or [])
    return f"{n} photo{'' if n == 1 else 's'}" if n else ""


def photo_inputs() -> tuple:
    """The zip box and the class rows; returns (zip, [row, ...], [name, photos, name, ...], Add a class)."""
    archive = gr.File(label="A .zip with one folder per class", file_types=[".zip"], type="filepath", height=120)
    rows, boxes = [], []
    with gr.Accordion("…or name your classes and add photos", open=False):
        for i in range(ROWS):
            with gr.Row(visible=i < MIN_CLASSES) as row:
                name = gr.Textbox(label=f"Class {i + 1}", placeholder="a name, such as cat", scale=1)
                # Thumbnails of what was given (a file box showed one chip for many files), and a count.
                photos = gr.Gallery(label="Photos", file_types=["image"], type="filepath", interactive=True, columns=6, height=150, object_fit="cover", scale=3)
            count = gr.Markdown()
            photos.change(photos_given, photos, count, api_visibility="private", show_progress="hidden")
            rows.append(row)
            boxes += [name, photos]
        more = gr.Button("Add a class", size="sm")
    return archive, rows, boxes, more


def try_section() -> tuple:
    """Classify a new photo, the mistakes, the download: (upload, arm, download, label, wrong,
    photo, note, [where it looked: picture, words])."""
    gr.Markdown("### Try it\nClassify a new photo with a model trained above, and see which validation photos it got wrong.")
    with gr.Row():
        with gr.Column():
            upload = image_upload("Photo")
            # Shown once a run says which arms it trained, offering those alone (trained_choice); an
            # API client may name any arm.
            arm = gr.Radio([*EXPERIMENT.arm_overrides["quick"], SCRATCH_ARM], value="fine tuning", label="Model", visible=False)
        photo = gr.Image(label="Your photo", interactive=False, height=200, min_width=160)
        label = gr.Label(num_top_classes=3, label="Prediction", min_width=160)
    note = gr.Markdown()
    why = why_outputs()
    download = gr.DownloadButton("Download the models (.zip)")  # under the prediction, which a phone shows next
    wrong = gr.Gallery(
        label="Validation photos it got wrong (true class → taken for, how sure)", columns=6, fit_columns=False,  # a few mistakes stay thumbnails
        height=280, object_fit="contain", allow_preview=False,  # one row of thumbnails; more mistakes scroll
    )
    return upload, arm, download, label, wrong, photo, note, why


class YourImages:
    """The report's transfer experiment on a student's own photos: the same run pieces as the
    lesson tabs (demo.panel), with controls of its own."""

    title = "Your images"

    def warm_up_arms(self) -> None:
        return None  # nobody's photos are known before they are given

    def build(self) -> None:
        rows_shown = gr.State(MIN_CLASSES)
        # The name of this session's photos in the dataset registry; dropped when the session ends.
        dataset = gr.State(None, delete_callback=forget_photos)
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown(f"### {EXPERIMENT.title}\n**{QUESTION}**\n\n{IDEA}")
                with gr.Accordion("How it works, and where your photos go", open=False):
                    gr.Markdown(EXPLANATION)
            with gr.Column(scale=2):
                archive, rows, boxes, more = photo_inputs()
                network = gr.Radio(list(NETWORKS), value=NETWORKS[0], label="Network")
                with gr.Row():
                    epochs = gr.Slider(1, MAX_EPOCHS, value=EXPERIMENT.base["quick"].epochs, step=1, label="Epochs")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed (split, batches, new layer)")
                buttons = RunButtons("status-train_your_images")
        status = gr.Markdown(elem_id="status-train_your_images")
        with gr.Row(visible=False) as plots:  # empty until the first Train: there is no reference run of your photos
            loss_plot, accuracy_plot = line_plots(EXPERIMENT, SERIES)
        instrument_column, *instrument = INSTRUMENT.build()
        table = gr.Dataframe(results_table(EXPERIMENT, None), label="Results", interactive=False)
        session, rows_given = gr.State(), gr.State([])
        upload, arm, download, label, wrong, photo, note, why = try_section()
        runs = buttons.wire(
            train_your_images, train_your_images_on_cpu, [archive, network, epochs, seed, rows_given], [loss_plot, accuracy_plot, table, status, session, dataset, *instrument],
            "train_your_images", [table, status], [plots, instrument_column], before=(collect_rows, boxes, rows_given),
        )
        for run in runs:
            # The choice first: its change shows that model's mistakes; unchanged, they are shown here.
            run.then(trained_choice, [arm, session], arm, api_visibility="private").then(wrong_photos, [arm, session], wrong, api_visibility="private")
        more.click(add_class, rows_shown, [rows_shown, *rows], api_visibility="private")
        # The public endpoint answers an API client with the prediction alone, or an error; a hidden
        # button carries it, so that the page's own call can answer with the photo and a note.
        gr.Button(visible=False).click(classify_your_images, [upload, arm, session], label, api_name="classify_your_images", concurrency_limit=4)
        explain_outputs = [gr.Label(visible=False), gr.Image(visible=False, type="pil", image_mode="L", format="png")]
        gr.Button(visible=False).click(explain_your_images, [upload, arm, session], explain_outputs, api_name="explain_your_images", concurrency_limit=4)
        upload.upload(classify_on_page, [upload, arm, session], [label, note, photo], api_visibility="private", concurrency_limit=4).then(
            why_your_images, [photo, arm, session], why, api_visibility="private", concurrency_limit=4
        )
        arm.change(wrong_photos, [arm, session], wrong, api_visibility="private")
        download.click(download_models, session, download, api_visibility="private")


TAB = YourImages()

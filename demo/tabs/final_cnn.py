"""Tab: the report's final CNN. Classify a photo with a trained CIFAR-10 classifier at once (the
embedded one, or CIFAR10_MODEL), see the 32×32 image it reads and its first layer, browse the test
images behind each cell of its confusion matrix, and train the final CNN yourself with the fast
CIFAR-10 recipe (airbench, hlb-CIFAR10) or the report's own."""

import shutil

import gradio as gr
import pandas as pd
import torch
from PIL import Image

from demo import classifiers
from demo.classifiers import Classifier, cell_examples, confusion, default_classifier, session_classifier
from demo.confusion import SIDE_PX, cell_at, matrix_picture
from serving.classroom import answer_first
from demo.first_layer import enlarged, feature_maps_file, filters_file
from demo.lesson import Lesson
from serving.model_store import dropped_message
from demo.panel import ComparisonPanel
from demo.settings import GPU_AVAILABLE, Settings
from demo.uploads import Refusal, classify, image_upload, open_upload
from demo.views import colour_map, download_folder, explained, image_file, photo_file, plot_series
from demo.why import OTHER_COLOUR, answer_of, explained_upload, nothing, why_answer, why_outputs, why_section
from training.datasets import CIFAR10_DATASET
from training.images import square_rgb
from training.sources import DatasetMissingError
from training import ablations
from training.experiments import REPORT_RECIPE_ARM, get_experiment

EXPLANATION = r"""
The report's final network: two 3×3 conv layers (100, 200 kernels) → 2×2 max pool → five 3×3 conv
layers (300 … 700) → max pool → fully-connected layers of 100 and 200 units → 10 outputs, with
batch norm and ReLU after every hidden layer, trained by Adadelta in batches of 100 for up to 20
epochs, stopping once a batch loss falls below 0.005. The report: **81.43%** test accuracy after
7.8 minutes on a Kaggle GPU.

**The quick preset goes beyond the report** to learn in a minute on a CPU. It keeps the report's
idea of stacked 3×3 conv layers with batch norm and max pools, but its network and recipe are
airbench's (Keller Jordan, 2024, after hlb-CIFAR10 and "How to train your ResNet"), at a fourteenth of
the cost per image: a first layer computed from the images (whitening, below), three groups of two
convs (16, 48, 64 channels) with GELU, Nesterov SGD under a one-cycle rate, label smoothing 0.2,
lookahead, crops padded by mirroring the edge, flips that alternate by epoch, and each test image
classified with its mirror and two shifted copies. Tick *the report's recipe* to train the same
network beside it with the report's Adadelta at a constant rate. What each piece buys is in the
table under *What each borrowed piece is worth*.

**The default model** is the same network at full width (64, 256, 256 channels), trained on a CPU
for 20 epochs on our JPEG copy of CIFAR-10 with Muon, an optimizer that gives every direction a
conv's filters can move in a step of the same size (its accuracy is on the line above the photo: just
under 92% on the 10,000 test images), where airbench reaches 94% in 8 epochs on the original
pixels on a GPU; JPEG at quality 75 costs 2–3 points. Its first layer is not learned: its 2×2
filters are computed from the training images so that they *whiten* them (each filter picks out
one independent colour or edge pattern, and its negative), which lets the layers above learn in a
few epochs.
"""
CPU_NOTE = """**This machine has no GPU.** The report's full network is a GPU job (15 epochs at 16.4 GFLOP per
training image, forward and backward); the quick preset is sized for a 2-core CPU."""
DEFAULT, SESSION = "default model", "trained in this session"
FINAL_COLOUR = colour_map(plot_series(get_experiment("final")))["final"]  # the session's final CNN, as its curves
SHORT_NAMES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STARTING_CELL = ("cat", "dog")  # the (true, predicted) cell shown at load: one of the embedded classifier's two commonest mistakes (cat → dog 61 images, dog → cat 96)


def borrowed_pieces() -> None:
    """The recorded ablations of the quick preset (training.ablations) as a table that scrolls
    sideways on a phone, or how to record them."""
    results = ablations.recorded()
    if results is None:
        gr.Markdown("_Not recorded yet: `python benchmarks/ablations.py --write` measures it._")
        return
    seeds = ", ".join(str(seed) for seed in results["seeds"])
    gr.Markdown(
        f"The quick preset's fast recipe trained with one piece taken out at a time, everything else the same, at seeds {seeds}: "
        f"test accuracy on all 10,000 test images of our JPEG copy of CIFAR-10 (2–3 points below the original pixels), "
        f"{results['precision']} on {results['host']} ({results['cpu_capability']}, the weakest host we target). "
        "Test-time views are taken out of the full recipe's own trained weights. The mean of the seeds is shown; "
        "each seed's accuracy is in the README."
    )
    # Four columns, so that a phone's 400 pixels show every number whole.
    rows = pd.DataFrame(ablations.table_rows(results))[["taken out", "in its place", "mean", "points"]]
    gr.Dataframe(rows, label="Taken out one at a time", interactive=False, wrap=True, column_widths=["27%", "31%", "23%", "19%"])


def classifier_named(choice: str, session: dict | None) -> Classifier:
    """The classifier the model choice names, or a gr.Error saying how to get one."""
    if choice not in (DEFAULT, SESSION):
        raise Refusal(f"model must be {DEFAULT!r} or {SESSION!r}, got {choice!r}")
    if choice == SESSION:
        classifier = session_classifier(session)
        if classifier is None and session and session["models"].dropped:
            raise Refusal(dropped_message())
        if classifier is None:
            raise Refusal("No model has been trained in this session yet: press Train below, or choose the default model.")
        return classifier
    classifier = default_classifier()
    if classifier is None:
        raise Refusal(f"No default model could be loaded: {classifiers.cifar10_model.message} Train one below.")
    return classifier


@answer_first
@torch.no_grad()
def classify_cifar10(image_path=None, choice=DEFAULT, session=None, request: gr.Request = None):
    """The top-3 classes first (what an API client reads as `result[0]`), which model answered,
    the photo, the 32×32 image the network reads, the first layer's filters and the feature maps
    they make of the photo."""
    image = open_upload(image_path)
    classifier = classifier_named(choice, session)
    model = classifier.model.eval()
    probabilities = classify(model, image, CIFAR10_DATASET, flip=classifier.test_time_flip, shift=classifier.test_time_shift)
    seen = torch.from_numpy(square_rgb(image, CIFAR10_DATASET.stored_size).copy()).permute(2, 0, 1)
    asker = request.session_hash if request else None  # the answer's pictures are kept for its session
    return probabilities, classifier.summary(), photo_file(image, asker), image_file(enlarged(seen, 6), owner=asker or "anonymous"), filters_file(model), feature_maps_file(model, image, asker)


def shown_matrix(classifier: Classifier, cell: tuple[str, str] | None = None) -> str:
    """The classifier's confusion matrix as a picture (demo.confusion), `cell` (true, predicted)
    outlined; computed from its test predictions where it was not recorded."""
    matrix = classifier.confusion if classifier.confusion is not None else confusion(classifier)
    outlined = tuple(CIFAR10_DATASET.classes.index(name) for name in cell) if cell else None
    return matrix_picture(matrix, SHORT_NAMES, outlined, owner=classifier.model)


def show_confusion(choice=DEFAULT, session=None):
    """The chosen model's confusion matrix, and which model it is."""
    try:
        classifier = classifier_named(choice, session)
        return shown_matrix(classifier), classifier.summary()
    except gr.Error as error:
        return gr.skip(), f"_{error.message}_"
    except DatasetMissingError:
        return gr.skip(), classifier.summary() + " Its confusion matrix was not recorded, and the test images are not here to compute it."


def default_confusion() -> str | None:
    """The default model's confusion matrix at page load, its starting cell outlined."""
    try:
        return shown_matrix(classifier_named(DEFAULT, None), STARTING_CELL)
    except (gr.Error, DatasetMissingError):
        return None


def default_summary() -> str:
    return show_confusion()[1]


def cell_view(classifier: Classifier, true_class: str, predicted_class: str, download: bool = True) -> tuple[list, str]:
    """One cell's gallery and the note above it; a DatasetMissingError without the test images."""
    classes = CIFAR10_DATASET.classes
    examples, count = cell_examples(classifier, classes.index(true_class), classes.index(predicted_class), download)
    short = SHORT_NAMES[classes.index(predicted_class)]  # a phone's caption has room for "82% car"
    gallery = [(image_file(enlarged(image, 4), owner=classifier.model), f"{probability:.0%} {short}") for image, probability in examples]
    verb = "correctly called" if true_class == predicted_class else "called"
    note = f"**{count}** test images of a {true_class} {verb} {predicted_class}" + (f"; the {len(examples)} most confident." if count > len(examples) else ".")
    if examples:
        note += " Click one to see where the models found its class."
    return gallery, note


def browse_cell(true_class=STARTING_CELL[0], predicted_class=STARTING_CELL[1], choice=DEFAULT, session=None):
    """The test images of one true class that the model called `predicted_class`, most confident
    first, and the confusion matrix of those same predictions with that cell outlined."""
    classes = CIFAR10_DATASET.classes
    if true_class not in classes or predicted_class not in classes:
        raise Refusal(f"classes must be CIFAR-10's: {', '.join(classes)}")
    classifier = classifier_named(choice, session)
    try:
        return *cell_view(classifier, true_class, predicted_class), shown_matrix(classifier, (true_class, predicted_class))
    except DatasetMissingError as error:
        raise Refusal(f"The test images are not available here: {error}") from None


def starting_cell() -> tuple[list, str]:
    """At page load: the cell the class boxes start at, with the default model, or on the page why
    it has no images. It downloads nothing: a page load must not fetch 163 MB unasked."""
    try:
        return cell_view(classifier_named(DEFAULT, None), *STARTING_CELL, download=False)
    except gr.Error as error:
        return [], f"_{error.message}_"
    except DatasetMissingError as error:
        return [], explained("No test images to show yet.", error)


def select_cell(event: gr.SelectData):
    """A click on the confusion matrix's picture: its row's true class and its column's predicted
    class (a click on the class names picks nothing)."""
    cell = cell_at(*event.index, len(CIFAR10_DATASET.classes))
    if cell is None:
        return gr.skip(), gr.skip()
    return tuple(CIFAR10_DATASET.classes[i] for i in cell)


def compared_arms(session: dict | None) -> list[tuple[str, str, torch.nn.Module]]:
    """The classifiers a photo's evidence is shown for, side by side: the default one, and the
    final CNN trained in this session where there is one, in its curves' colour."""
    arms = [(DEFAULT, OTHER_COLOUR, default.model)] if (default := default_classifier()) else []
    trained = session_classifier(session)
    return arms + ([(SESSION, FINAL_COLOUR, trained.model)] if trained else [])


def answering(classifier: Classifier) -> tuple[torch.nn.Module, bool, bool]:
    """The classifier's model and the test-time views (flip, shift) its accuracy was measured with."""
    return classifier.model.eval(), classifier.test_time_flip, classifier.test_time_shift


@answer_first
def why_cifar10(photo=None, choice=DEFAULT, session=None, explained_class="", request: gr.Request = None) -> tuple:
    """The page's explanation of the photo just answered: where each classifier found the evidence
    for the chosen model's answer (or the class picked), side by side. Nothing where nothing answered."""
    if photo is None:
        return nothing()
    try:
        classifier = classifier_named(choice, session)
    except Refusal:
        return nothing()
    image = Image.fromarray(photo).convert("RGB")
    classes = CIFAR10_DATASET.classes
    model, flip, shift = answering(classifier)
    target = classes.index(explained_class) if explained_class in classes else answer_of(model, image, CIFAR10_DATASET, flip, shift)
    return why_answer(image, CIFAR10_DATASET, target, compared_arms(session), request.session_hash if request else None)


@answer_first
def explain_cifar10(image_path=None, choice=DEFAULT, session=None):
    """The top-3 classes and where the chosen model found its answer's evidence: a grayscale map,
    32×32, brighter where the evidence is stronger."""
    return explained_upload(image_path, lambda: answering(classifier_named(choice, session)), CIFAR10_DATASET)


@answer_first
def why_cell(event: gr.SelectData, true_class=STARTING_CELL[0], predicted_class=STARTING_CELL[1], choice=DEFAULT, session=None, request: gr.Request = None) -> tuple:
    """A click on one of a confusion cell's test images: where each classifier found the evidence
    for the class it was taken for."""
    classes = CIFAR10_DATASET.classes
    try:
        examples, _ = cell_examples(classifier_named(choice, session), classes.index(true_class), classes.index(predicted_class), download=False)
        image = Image.fromarray(examples[event.index][0].permute(1, 2, 0).numpy())
    except (gr.Error, DatasetMissingError, IndexError, ValueError):
        return nothing()
    return why_answer(image, CIFAR10_DATASET, classes.index(predicted_class), compared_arms(session), request.session_hash if request else None)


def saved_model_file(model: torch.nn.Module) -> str:
    """The model as a downloadable .zip of its save_pretrained folder."""
    folder = download_folder("final-cnn-")
    model.save_pretrained(folder / "model")
    return shutil.make_archive(str(folder / "cnn-lab-final"), "zip", folder / "model")


def classify_section():
    """Classify a photo at once, and browse the test images behind the default model's confusion
    matrix: the components the Train panel below also feeds."""
    gr.Markdown("### Classify a photo\nA network trained on CIFAR-10 sees every photo as 32×32 pixels, the size of CIFAR-10's images.")
    with gr.Row():
        upload = image_upload("Photo")
        choice = gr.Radio([DEFAULT, SESSION], value=DEFAULT, label="Model", info="default: the classifier that comes with this app")
    answered = gr.Markdown(default_summary)  # a function: read at every page load
    with gr.Row():
        photo = gr.Image(label="Your photo", interactive=False, height=200, min_width=160)
        seen = gr.Image(label="What the network sees (32×32)", interactive=False, height=200, min_width=160)
        label = gr.Label(num_top_classes=3, label="Top-3 classes", min_width=160)
    # Where it looked: computed after the answer, so that it never delays the label.
    with why_section() as why:
        why_class = gr.Dropdown([("the answer", ""), *zip(SHORT_NAMES, CIFAR10_DATASET.classes)], value="", label="Show the evidence for")
    with gr.Row():
        filters = gr.Image(label="First-layer filters (each enlarged to 48 px)", interactive=False, min_width=300)
        maps = gr.Image(label="What the first layer's filters make of your photo (up to 32 of them)", interactive=False, min_width=300)
    gr.Markdown(
        "Each square on the left is one of the first layer's filters, a 2×2 patch of colour, enlarged. The default model does not "
        "learn them: they are computed from the training images to *whiten* them, each picking out one colour or edge pattern "
        "(and its negative). On the right, the photo as each filter sees it: bright where the pattern is."
    )
    gr.Markdown("### Where the model goes wrong\nRows are the true class, columns the predicted one, over CIFAR-10's 10,000 test images; the darker a cell, the larger its share of its row. Click a cell (or pick two classes) to see its images, most confident first.")
    matrix = gr.Image(default_confusion, label="Confusion matrix", interactive=False, show_label=False, width=SIDE_PX, buttons=[])
    # One name per class on the page: the matrix's short ones (the value stays CIFAR-10's own).
    names = list(zip(SHORT_NAMES, CIFAR10_DATASET.classes))
    with gr.Row():
        true_class = gr.Dropdown(names, value=STARTING_CELL[0], label="True class")
        predicted_class = gr.Dropdown(names, value=STARTING_CELL[1], label="Predicted class")
    cell_note = gr.Markdown()
    gallery = gr.Gallery(label="Test images in this cell", columns=6, height="auto", object_fit="contain", allow_preview=False)
    cell_why = why_outputs()
    return dict(
        upload=upload, choice=choice, answered=answered, classified=[label, answered, photo, seen, filters, maps], matrix=matrix, true_class=true_class,
        predicted_class=predicted_class, cell=[gallery, cell_note, matrix], photo=photo, why_class=why_class, why=why, cell_why=cell_why,
    )


class FinalCNN(Lesson):
    """Train the final CNN (and, if asked, the same network with the report's recipe); stream the
    curves, then per-class accuracy, the model to download, and switch the classifier to it."""


    def controls(self) -> list:
        return [gr.Checkbox(False, label="Also train with the report's recipe (Adadelta, constant rate): twice the time")]

    def arms(self, settings: Settings, with_report_recipe=False) -> list:
        """The final CNN, and the same network with the report's recipe if asked for."""
        return [c for c in settings.arms(self.experiment) if with_report_recipe or c.label != REPORT_RECIPE_ARM]

    def frame(self, update, session) -> tuple:
        shown = super().frame(update, session)
        if not update.finished:
            return *shown, gr.skip(), gr.skip(), gr.skip()
        run = next(run for run in session["results"]["runs"] if run["label"] == "final")
        per_class = pd.DataFrame({"class": run["classes"], "test accuracy (%)": [round(100 * a, 1) for a in run["per_class_acc"]]})
        return *shown, per_class, saved_model_file(session["models"]["final"]), SESSION

    def build(self):
        classifier = classify_section()
        panel = ComparisonPanel(self)
        with gr.Column(visible=False) as trained:  # hidden until the first Train: nothing to show before
            per_class = gr.Dataframe(label="Per-class accuracy", interactive=False)
            download = gr.File(label="Download the trained model (save_pretrained folder, zipped)")
        panel.hidden_until_trained.append(trained)
        with gr.Accordion("What each borrowed piece is worth", open=False):
            borrowed_pieces()
        panel.wire(extra_outputs=(per_class, download, classifier["choice"]))
        inputs = [classifier["upload"], classifier["choice"], panel.session]
        why = dict(fn=why_cifar10, inputs=[classifier["photo"], classifier["choice"], panel.session, classifier["why_class"]], outputs=classifier["why"], concurrency_limit=4, api_visibility="private")
        classifier["upload"].upload(classify_cifar10, inputs, classifier["classified"], api_name="classify_cifar10", concurrency_limit=4).then(**why)
        classifier["why_class"].input(**why)
        # The explanation's public endpoint: a hidden button carries it (its outputs are the API's alone).
        explain_outputs = [gr.Label(visible=False), gr.Image(visible=False, type="pil", image_mode="L", format="png")]
        gr.Button(visible=False).click(explain_cifar10, inputs, explain_outputs, api_name="explain_cifar10", concurrency_limit=4)
        cell_inputs = [classifier["true_class"], classifier["predicted_class"], classifier["choice"], panel.session]
        classifier["cell"][0].select(why_cell, cell_inputs, classifier["cell_why"], api_visibility="private", concurrency_limit=4)
        classifier["choice"].change(show_confusion, [classifier["choice"], panel.session], [classifier["matrix"], classifier["answered"]], api_visibility="private")
        browse = dict(fn=browse_cell, inputs=[classifier["true_class"], classifier["predicted_class"], classifier["choice"], panel.session], outputs=classifier["cell"], concurrency_limit=2)
        classifier["matrix"].select(select_cell, None, [classifier["true_class"], classifier["predicted_class"]], api_visibility="private").then(**browse, api_visibility="private")
        gr.on([classifier["true_class"].input, classifier["predicted_class"].input], **browse, api_name="browse_confusion")
        gr.on(None, starting_cell, None, classifier["cell"][:2], api_visibility="private", concurrency_limit=2)
        return panel


TAB = FinalCNN(
    "Final CNN", "final", "train_final_cnn", EXPLANATION + ("" if GPU_AVAILABLE else "\n\n" + CPU_NOTE),
    question="How good can a small CNN get, and how fast?",
    idea=(
        "Train the report's final network, or the same network with a modern fast recipe beside the report's own, and "
        "watch both learn. The one trained here then classifies your photos above."
    ),
)

"""Tab: AlexNet transfer learning on ants vs bees — feature extraction vs fine tuning, paired,
and a classifier for uploaded photos. Idea: the PyTorch transfer-learning tutorial."""

import gradio as gr

from serving.classroom import answer_first
from demo.lesson import Lesson
from demo.panel import ComparisonPanel
from serving.model_store import dropped_message
from demo.uploads import ConfiguredModel, Refusal, classify, image_upload, open_upload
from demo.views import answered_on_page
from demo.why import OTHER_COLOUR, explained_upload, trained_arms, why_outputs, why_photo
from models import AlexNetTransfer
from training.datasets import HYMENOPTERA_DATASET
from training.sources import data_dir

EXPLANATION = r"""
AlexNet learned its filters on 1.2 million ImageNet photos. To tell ants from bees with 245
photos, keep those filters and replace only the last layer with a new 2-way head:

- **Feature extraction**: the backbone is frozen; only the head's $4096 \times 2$ weights train.
  Fast, and it cannot overfit the backbone.
- **Fine tuning**: every layer trains, starting from the ImageNet weights, at a small learning rate.

*The report swapped these names:* its "with fine tuning" run froze the backbone (feature
extraction) and its "without fine tuning" run trained every layer. We use the standard names.
Both arms start from the same weights, including the same new head.
"""
ARMS = ["feature extraction", "fine tuning"]

ants_bees_model = ConfiguredModel("ANTS_BEES_MODEL", AlexNetTransfer)


def answering_model(arm: str, session: dict | None):
    """ANTS_BEES_MODEL, else this session's trained arm, or a Refusal saying how to get one."""
    model = ants_bees_model.get()
    if model is None and session:
        models = session["models"]
        if models.dropped:
            raise Refusal(dropped_message())
        model = models.get(arm) or next(iter(models.values()), None)
    if model is None:
        raise Refusal("No ants-vs-bees model yet: train one above.")
    return model


@answer_first
def classify_ants_bees(image_path=None, arm="fine tuning", session=None):
    """Ant or bee: probabilities from ANTS_BEES_MODEL, else from this session's trained arm."""
    image = open_upload(image_path)
    return classify(answering_model(arm, session), image, HYMENOPTERA_DATASET)


@answer_first
def classify_on_page(image_path=None, arm="fine tuning", session=None, request: gr.Request = None) -> tuple:
    """The page's call: the prediction, a note and the photo itself (demo.views.answered_on_page)."""
    return answered_on_page(image_path, request, lambda image: classify(answering_model(arm, session), image, HYMENOPTERA_DATASET))


def compared_arms(session: dict | None) -> list:
    """The models a photo's evidence is shown for, side by side: ANTS_BEES_MODEL where it is set,
    and every arm this session trained, in its curves' colour."""
    configured = ants_bees_model.get()
    return ([("configured model", OTHER_COLOUR, configured)] if configured is not None else []) + trained_arms(session, TAB.experiment)


@answer_first
def why_ants_bees(photo=None, arm="fine tuning", session=None, request: gr.Request = None) -> tuple:
    """Where each model found the evidence for the answer to the photo shown."""
    return why_photo(photo, HYMENOPTERA_DATASET, lambda: answering_model(arm, session), compared_arms(session), request.session_hash if request else None)


@answer_first
def explain_ants_bees(image_path=None, arm="fine tuning", session=None):
    """Ant or bee, and where the answering model found its evidence: a grayscale map, 224×224."""
    return explained_upload(image_path, lambda: (answering_model(arm, session), False, False), HYMENOPTERA_DATASET)


def example_photos(per_class: int = 2) -> list[str]:
    """A few validation photos of each class, when the dataset is present."""
    root = data_dir() / "hymenoptera_data" / "val"
    return [str(p) for name in HYMENOPTERA_DATASET.classes for p in sorted((root / name).glob("*.jpg"))[:per_class]] if root.is_dir() else []


def pick_example(event: gr.SelectData) -> str:
    """The validation photo clicked in the gallery, as the upload."""
    return example_photos()[event.index]


class TransferLearning(Lesson):
    """Train feature extraction and fine tuning of AlexNet on ants vs bees, paired."""


    def build(self) -> ComparisonPanel:
        panel = super().build()
        gr.Markdown("### Ant or bee?")
        with gr.Row():
            with gr.Column():
                upload = image_upload("Photo")
                arm = gr.Radio(ARMS, value="fine tuning", label="Model trained in this session")
            photo = gr.Image(label="Your photo", interactive=False, height=200, min_width=160)
            label = gr.Label(num_top_classes=2, label="Prediction", min_width=160)
        note = gr.Markdown()
        where_it_looked = why_outputs()
        examples = example_photos()
        # One row of the four photos, as tall as they need: "auto" left a phone 200 px of empty frame.
        gallery = gr.Gallery(examples, label="Validation photos: click one to classify it", columns=4, rows=1, height=170, object_fit="contain", allow_preview=False, visible=bool(examples))
        inputs, shown = [upload, arm, panel.session], [label, note, photo]
        # The public endpoint answers an API client with the prediction alone, or an error; a
        # hidden button carries it, so that the page's own calls can answer with notes instead.
        gr.Button(visible=False).click(classify_ants_bees, inputs, label, api_name="classify_ants_bees", concurrency_limit=4)
        explain_outputs = [gr.Label(visible=False), gr.Image(visible=False, type="pil", image_mode="L", format="png")]
        gr.Button(visible=False).click(explain_ants_bees, inputs, explain_outputs, api_name="explain_ants_bees", concurrency_limit=4)
        # Where it looked comes after the answer, never delaying it.
        why = dict(fn=why_ants_bees, inputs=[photo, arm, panel.session], outputs=where_it_looked, api_visibility="private", concurrency_limit=4)
        upload.upload(classify_on_page, inputs, shown, api_visibility="private", concurrency_limit=4).then(**why)
        gallery.select(pick_example, None, upload, api_visibility="private").then(classify_on_page, inputs, shown, api_visibility="private").then(**why)
        return panel


TAB = TransferLearning(
    "Transfer learning", "transfer", "train_transfer", EXPLANATION,
    question="With a few hundred photos, should you retrain a pretrained network's every layer, or only its last one?",
    idea=(
        "AlexNet learned its filters on over a million ImageNet photos. To tell ants from bees, either keep its filters "
        "and train only a new last layer (feature extraction), or let every layer move a little (fine tuning). Both "
        "start from the same weights and see the same photos."
    ),
)

"""Why this answer, drawn: where each network found its evidence for a class in the same photo, side
by side in the arms' colours, with how to read it and how faithful the method measured on that
network (results/explanations.json, benchmarks/explanations.py). The maps come from
training.explanations.
"""

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from demo.uploads import Refusal, classify, open_upload
from demo.views import colour_map, image_file, plot_series, series_of
from training import explanations

RESULTS = Path(__file__).resolve().parent.parent / "results" / "explanations.json"
OTHER_COLOUR = "#555555"  # a model no arm's curves name (a configured classifier)
PANEL_IN = 2.6  # inches a map, at 100 dpi: two side by side fit a phone's 400 px at about three quarters
HOW_TO_READ = {
    "occlusion": "Bright where greying out that patch of the photo lowered the network's score for this class the most. "
    "Dark where greying it out made no difference: the network found its evidence elsewhere.",
    "grad-cam": "Bright where the last conv layer's features that raise this class's score lie (Grad-CAM). "
    "Dark where nothing there pushed towards it.",
}


@contextmanager
def why_section() -> Iterator[list]:
    """Lay out where it found its evidence: its words (after whatever the caller lays out inside the
    `with`) beside the picture on a wide screen, under them on a phone. Yields the handlers' outputs,
    [picture, words], filled once the section is laid out; the picture is hidden until there is one."""
    outputs = []
    with gr.Row():
        with gr.Column(min_width=300):  # on a phone the words take the width, the picture goes under them
            yield outputs
            words = gr.Markdown()
        picture = gr.Image(label="Where it found its evidence", show_label=False, interactive=False, height=300, buttons=[], min_width=300, elem_classes="why-picture", visible=False)
    outputs += [picture, words]


def why_outputs() -> list:
    """A section of its own (why_section), nothing above its words: [picture, words]."""
    with why_section() as outputs:
        pass
    return outputs


@functools.cache
def measured() -> dict:
    """Each network's recorded faithfulness, by its name in results/explanations.json."""
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {"networks": {}}


def faithfulness(model: torch.nn.Module) -> str:
    """How faithful the model's method measured on a network of its kind, in a sentence, or ""
    where nothing of its kind was measured."""
    method, kind = explanations.method_for(model), type(model).__name__
    for name, network in measured()["networks"].items():
        found = network["methods"].get(method)
        if network["model"] == kind and found:
            return (
                f"Measured on {found['images']} {'test images' if 'cifar10' in name else 'validation photos'} ({network['weights']}): removing the 20% "
                f"of each image this map marks lowered the answer's probability by {found['map_drop']:.0f} points, removing as much at random "
                f"by {found['random_drop']:.0f}; the map hurt more on {found['map_wins']:.0%} of them."
            )
    return ""


def overlay(pixels: torch.Tensor, found: torch.Tensor) -> np.ndarray:
    """The photo in grey under the map in a heat colour scale, H×W×3 uint8."""
    grey = pixels.float().mean(dim=0, keepdim=True).permute(1, 2, 0).numpy() / 255
    heat = colormaps["inferno"](found.numpy())[..., :3]
    return (255 * (0.35 * grey + 0.65 * heat)).clip(0, 255).astype(np.uint8)


def paired_picture(panels: list[tuple[str, str, torch.Tensor, torch.Tensor]]) -> Image.Image:
    """The maps side by side, each titled in its arm's colour: (title, colour, pixels, map)."""
    figure = Figure(figsize=(PANEL_IN * len(panels), PANEL_IN + 0.5), dpi=100, layout="constrained")
    for axes, (title, colour, pixels, found) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        axes.imshow(overlay(pixels, found), interpolation="nearest" if pixels.shape[-1] <= 64 else "bilinear")
        axes.set_title(title, color=colour, fontsize=12, fontweight="bold", wrap=True)
        axes.set_axis_off()
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


def nothing() -> tuple:
    """No picture and no words: no photo answered, or no model (the answer's note says why). Made
    afresh each time: Gradio may alter an update it is handed."""
    return gr.update(value=None, visible=False), ""


def why_answer(image: Image.Image, spec, target: int, arms: list[tuple[str, str, torch.nn.Module]], owner: str | None) -> tuple[dict, str]:
    """The picture of every arm's map of `image` for class `target`, shown, and its words: how to
    read it, and how faithful each method measured. `arms`: (name, colour, model)."""
    panels = []
    for name, colour, model in arms:
        pixels, found = explanations.explain(model, image, spec, target)
        panels.append((name, colour, pixels, found))
    methods = dict.fromkeys(explanations.method_for(model) for _, _, model in arms)
    reading = " ".join(HOW_TO_READ[method] for method in methods)
    faithful = " ".join(dict.fromkeys(filter(None, (faithfulness(model) for _, _, model in arms))))
    words = f"**Where it found “{spec.classes[target]}”.** {reading}" + (f"\n\n{faithful}" if faithful else "")
    return gr.update(value=image_file(paired_picture(panels), owner=owner or "anonymous"), visible=True), words


def relevance_image(model: torch.nn.Module, image: Image.Image, spec, target: int) -> Image.Image:
    """The map alone, as the explain endpoints give it: grayscale, the network's input size,
    brighter where the evidence for the class is stronger."""
    _, found = explanations.explain(model, image, spec, target)
    return Image.fromarray((255 * found.numpy()).round().astype(np.uint8), mode="L")


def trained_arms(session: dict | None, experiment) -> list[tuple[str, str, torch.nn.Module]]:
    """The arms a browser session trained, in their curves' colours: (name, colour, model)."""
    if not session or session["models"].dropped:
        return []
    series = plot_series(experiment)
    colours = colour_map(series)
    return [(arm, colours.get(series_of(arm, series), OTHER_COLOUR), model) for arm, model in session["models"].items()]


def top_class(probabilities: dict[str, float], spec) -> int:
    return spec.classes.index(max(probabilities, key=probabilities.get))


def answer_of(model: torch.nn.Module, image: Image.Image, spec, flip: bool = False, shift: bool = False) -> int:
    """The class the model answers for the photo, with the test-time views its accuracy was measured with."""
    return top_class(classify(model, image, spec, flip, shift), spec)


def why_photo(photo: np.ndarray | None, spec, answering: Callable[[], torch.nn.Module], arms: list, owner: str | None) -> tuple:
    """The page's explanation of the photo it shows: every arm's map for the class the answering
    model gave it, or nothing where there is no photo or no model (the answer's note says why)."""
    if photo is None or not arms:
        return nothing()
    image = Image.fromarray(photo).convert("RGB")
    try:
        target = answer_of(answering(), image, spec)
    except Refusal:
        return nothing()
    return why_answer(image, spec, target, arms, owner)


def explained_upload(image_path: str | None, answering: Callable[[], tuple[torch.nn.Module, bool, bool]], spec) -> tuple[dict, Image.Image]:
    """An explain endpoint's answer: the class probabilities and the map of the top class's
    evidence. `answering` gives the model and its test-time views (flip, shift), or a Refusal; it
    is asked after the upload is read, which deletes it whatever the answer."""
    image = open_upload(image_path)
    model, flip, shift = answering()
    probabilities = classify(model, image, spec, flip, shift)
    return probabilities, relevance_image(model, image, spec, top_class(probabilities, spec))

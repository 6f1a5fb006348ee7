"""Tab: the report's final CNN — train it, read its confusion matrix, classify a photo, and look
inside: the first layer's filters and the feature maps they produce for the upload."""

import shutil
import tempfile
from pathlib import Path

import gradio as gr
import matplotlib
import pandas as pd
import torch
from torchvision.utils import make_grid

matplotlib.use("Agg")  # render off-screen: a server has no display
import matplotlib.pyplot as plt  # noqa: E402

from demo.common import GPU_AVAILABLE, gpu, plan  # noqa: E402
from demo.panel import ComparisonPanel, session_result, watch  # noqa: E402
from demo.views import PLOT_MIN_WIDTH, curves, plot_series, results_table  # noqa: E402
from demo.uploads import ConfiguredModel, classify, image_upload, open_upload  # noqa: E402
from models import TeachingCNN  # noqa: E402
from training.data import CIFAR10_INFO, model_input  # noqa: E402
from training.experiments import get_experiment  # noqa: E402

EXPLANATION = r"""
The report's final network: two 3×3 conv layers (100, 200 kernels) → 2×2 max pool → five 3×3 conv
layers (300 … 700) → max pool → fully-connected layers of 100 and 200 units → 10 outputs, with
batch norm and ReLU after every hidden layer, trained by Adadelta in batches of 100 for up to 20
epochs, stopping once a batch loss falls below 0.005. The report: **81.43%** test accuracy after
7.8 minutes on a Kaggle GPU.
"""
CPU_NOTE = """**This machine has no GPU.** The full network is a GPU job (the report's run is 15 epochs of
2.7 GFLOP-per-image training). The `quick` preset trains the same layer pattern at a sixth of the width on a subset."""

cifar10_model = ConfiguredModel("CIFAR10_MODEL", TeachingCNN)


def confusion_figure(confusion: list[list[int]], classes: list[str]):
    figure, axes = plt.subplots(figsize=(5.2, 4.4), dpi=100)
    axes.imshow(confusion, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(classes)), classes, fontsize=8)
    axes.set_xlabel("predicted"), axes.set_ylabel("true")
    for row, counts in enumerate(confusion):
        for column, count in enumerate(counts):
            axes.text(column, row, count, ha="center", va="center", fontsize=7)
    figure.tight_layout()
    plt.close(figure)
    return figure


def saved_model_file(model: torch.nn.Module) -> str:
    """The model as a downloadable .zip of its save_pretrained folder."""
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-final-"))
    model.save_pretrained(folder / "model")
    return shutil.make_archive(str(folder / "cnn-lab-final"), "zip", folder / "model")


@gpu(duration=900)
def train_final_cnn(preset="quick", epochs=None, n_train=None, lr=None, batch_size=None, seed=0, init=None, progress=gr.Progress(), request: gr.Request = None):
    """Train the final architecture; stream curves, then the confusion matrix and per-class accuracy."""
    experiment = get_experiment("final")
    configs = plan(experiment, preset, epochs, n_train, lr, batch_size, seed, init)
    series = plot_series(experiment)
    for recorder, status, finished in watch(experiment, configs, preset, progress, request):
        if not finished:
            yield *curves(experiment, recorder, series), results_table(experiment, recorder), status, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            continue
        run = recorder.runs["final"]
        per_class = pd.DataFrame({"class": run["classes"], "test accuracy (%)": [round(100 * a, 1) for a in run["per_class_acc"]]})
        yield (
            *curves(experiment, recorder, series),
            results_table(experiment, recorder),
            status,
            session_result(recorder, experiment, preset),
            confusion_figure(run["confusion"], run["classes"]),
            per_class,
            saved_model_file(recorder.models["final"]),
        )


def pick_model(session: dict | None) -> torch.nn.Module:
    model = cifar10_model.get()
    if model is None and session:
        model = session["models"].get("final")
    if model is None:
        raise gr.Error(f"No CIFAR-10 model yet: train one above, or set CIFAR10_MODEL to a Hub repo or a save_pretrained folder ({cifar10_model.message})")
    return model


def tiles(maps: torch.Tensor, columns: int, scale: int):
    """B,C,H,W float → one PIL image: each tile min-max scaled, upscaled by `scale` (nearest)."""
    low = maps.amin(dim=(1, 2, 3), keepdim=True)
    high = maps.amax(dim=(1, 2, 3), keepdim=True)
    grid = make_grid((maps - low) / (high - low + 1e-8), nrow=columns, padding=1, pad_value=1.0)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    return (grid.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def classify_cifar10(image_path=None, session=None):
    """Top-3 CIFAR-10 classes of an uploaded image, the first layer's filters and its feature maps."""
    image = open_upload(image_path)
    model = pick_model(session).eval()
    probabilities = classify(model, image, CIFAR10_INFO)
    first = model.features[0]
    filters = tiles(first.conv.weight.float().cpu(), columns=16, scale=4)
    device = first.conv.weight.device
    maps = first(model_input(image, CIFAR10_INFO).to(device))[0, :32].float().cpu()  # 32 channels, 32×32
    return probabilities, filters, tiles(maps[:, None], columns=8, scale=3)


def build() -> None:
    panel = ComparisonPanel("final", EXPLANATION + ("" if GPU_AVAILABLE else "\n\n" + CPU_NOTE))
    # Hidden until the first Train: before it there is no test set result to show.
    with gr.Column(visible=False) as trained:
        with gr.Row():
            confusion = gr.Plot(label="Confusion matrix (test set)", format="png", min_width=PLOT_MIN_WIDTH)
            per_class = gr.Dataframe(label="Per-class accuracy", interactive=False)
        download = gr.File(label="Download the trained model (save_pretrained folder, zipped)")
    panel.hidden_until_trained.append(trained)
    gr.Markdown("### Classify a photo\nUploads are shrunk to 32×32, the size of CIFAR-10's images.")
    with gr.Row():
        upload = image_upload("Photo")
        label = gr.Label(num_top_classes=3, label="Top-3 classes")
    with gr.Row():
        filters = gr.Image(label="First-layer filters (3×3, one tile each)", interactive=False)
        maps = gr.Image(label="Feature maps of the first layer for this photo", interactive=False)
    panel.wire(train_final_cnn, [], api_name="train_final_cnn", outputs=[*panel.outputs, confusion, per_class, download])
    upload.upload(classify_cifar10, [upload, panel.session], [label, filters, maps], api_name="classify_cifar10", concurrency_limit=4)

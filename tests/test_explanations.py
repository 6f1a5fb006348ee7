"""Every figure a lesson tab quotes beside its controls has one named source: each accuracy in its
explanation and its quick preset's note is one arm's test accuracy at one evaluation of the
experiment's committed reference run (results/reference/), or one of the report's own figures; each
other measured figure is formatted here from the committed file that holds it; and a figure that
is none of these (the report's, a paper's, arithmetic) is listed with where it comes from."""

import json
import re
import statistics
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from app import TABS
from demo.lesson import lesson_tabs
from models import create_model
from training.experiments import get_experiment
from training.lessons import margin, preset_arms
from training.readings import DEPTH, FINAL, instrument_of, times
from training.results import load_reference

ACCURACY = re.compile(r"(\d+\.\d\d)%")

# Each quoted accuracy, by experiment: ("reference", arm, epoch), the reference run's evaluation
# after that epoch, or ("report", arm), the report's figure for that arm.
SOURCES = {
    "activations": {"68.16": ("reference", "tanh", 5), "65.76": ("reference", "relu", 5)},
    "momentum": {},
    "adaptive-lr": {"52.05": ("reference", "adadelta", 5), "30.96": ("reference", "constant lr", 5), "51.24": ("report", "constant lr")},
    "batchnorm": {"50.45": ("reference", "no batch norm", 2), "68.50": ("reference", "batch norm", 2)},
    "architecture": {
        "62.95": ("reference", "conv3-fc1", 2),
        "58.79": ("reference", "conv5-fc1", 2),
        "54.90": ("reference", "conv5-fc2", 2),
        "50.45": ("reference", "conv5-fc3", 2),
        "37.55": ("reference", "conv5-fc3", 1),
        "51.74": ("reference", "conv1-fc1", 1),
    },
    "final": {"81.43": ("report", "final")},
    "transfer": {},
}


def figure(experiment_name: str, source: tuple) -> str:
    """The accuracy its source holds, written as the tabs write it."""
    if source[0] == "report":
        (number,) = [n for n in get_experiment(experiment_name).report if n.arm == source[1]]
        return f"{100 * number.test_acc:.2f}"
    (run,) = [run for run in load_reference(experiment_name)["runs"] if run["label"] == source[1]]
    (point,) = [p for p in run["history"] if p["type"] == "Evaluation" and p["epoch"] == source[2]]
    return f"{100 * point['test_acc']:.2f}"


@pytest.mark.parametrize("tab", lesson_tabs(TABS), ids=lambda tab: tab.title)
def test_every_quoted_accuracy_is_the_one_its_named_source_holds(tab):
    sources = SOURCES[tab.experiment_name]
    quoted = ACCURACY.findall(tab.explanation + tab.experiment.quick_note)
    assert set(quoted) == set(sources), "each quoted accuracy needs its source here, and each source its quote"
    for written, source in sources.items():
        assert figure(tab.experiment_name, source) == written, f"{written}% is not what {source} holds"


RESULTS = Path(__file__).parent.parent / "results"


def recorded(file_name: str) -> dict:
    return json.loads((RESULTS / file_name).read_text())["experiments"]


def inside_phrases() -> dict[str, list[str]]:
    """What the Activations and Depth tabs quote from benchmarks/inside.py's measurements (the
    report's settings and init, 500 steps, seed 0, fp32), formatted from results/inside.json."""
    inside = recorded("inside.json")
    relu, tanh = (inside["activations"]["measured"][arm] for arm in ("relu", "tanh"))
    cells = inside["architecture"]["measured"]
    fall = {arm: run["act_std"]["conv 1"] / run["act_std"]["conv 5"] for arm, run in (("relu", relu), ("tanh", tanh))}
    dead = [relu["dead_share"][layer] for layer in ("fc 1", "fc 2")]
    deep = cells["conv1-fc1"]["grad_norm"]["conv 1"] / cells["conv5-fc3"]["grad_norm"]["conv 1"]
    gradient = {cell: f"{cells[cell]['grad_norm']['conv 1']:.2g}" for cell in ("conv3-fc1", "conv5-fc1", "conv5-fc3")}
    steps = cells["conv1-fc1"]["update_ratio"]["conv 1"] / cells["conv5-fc3"]["update_ratio"]["conv 1"]
    return {
        "activations": [
            f"ReLU's output scale fell {fall['relu']:.0f}-fold, tanh's {fall['tanh']:.1f}-fold",
            f"got {times(relu['grad_norm']['conv 1'] / tanh['grad_norm']['conv 1'])} tanh's gradient",
            f"took steps {times(relu['update_ratio']['conv 1'] / tanh['update_ratio']['conv 1'])} tanh's size",
            f"{100 * min(dead):.0f}–{max(dead):.0%} of its fully-connected units were dead",
            f"still at chance (loss {relu['final_loss']:.2f}) while tanh's was learning ({tanh['final_loss']:.2f})",
        ],
        "architecture": [
            f"it fell {float(f'{deep:.2g}'):.0f}-fold from 1 conv × 1 fc to 5 × 3",
            f"the gradient falling {float(f'{deep:.2g}'):.0f}-fold from 1 conv × 1 fc to 5 × 3",
            f"got {cells['conv1-fc1']['grad_norm']['conv 1']:.3g} (gradient norm) in the 1 × 1 cell, {gradient['conv3-fc1']} with 3 conv, "
            f"{float(gradient['conv5-fc1']):.3f} with 5 and {gradient['conv5-fc3']} at 5 × 3, {float(f'{deep:.2g}'):.0f} times less, "
            f"and its steps were {float(f'{steps:.2g}'):.0f} times smaller",
        ],
        "README": [
            f"ReLU shrinks the signal {fall['relu']:.0f}-fold over the five conv layers (tanh {fall['tanh']:.1f}-fold)",
            f"falls {float(f'{deep:.2g}'):.0f}-fold from 1 conv × 1 fc to 5 × 3",
        ],
    }


def range_phrases() -> dict[str, list[str]]:
    """A range under an instrument's plot is its gauge's min and max over results/readings.json."""
    phrases = {}
    for experiment_name, instrument, written in (("architecture", DEPTH, "got {}–{} of the shallowest's, seeds 0–4"), ("final", FINAL, "its steps were {}–{} of Adadelta's")):
        (gauge,) = instrument.gauges
        values = [run["readings"][gauge.name] for run in recorded("readings.json")[experiment_name]["runs"]]
        phrases[experiment_name] = [written.format(f"{min(values):.2f}", f"{max(values):.2f}")]
    return phrases


def lesson_margins(experiment_name: str, lesson_name: str, runs: list[dict]) -> dict[tuple[str, int], float]:
    (lesson,) = [lesson for lesson in get_experiment(experiment_name).lessons if lesson.name == lesson_name]
    return {(run["precision"], run["seed"]): margin(lesson, run["accuracies"]) for run in runs}


def margin_phrases() -> dict[str, list[str]]:
    """Activations' gaps and Depth's average come from their reference runs; the quick presets' margins from their
    recorded seeds (results/lessons.json), Batch normalization's under the He init from the runs
    recorded under it (`benchmarks/lessons.py --init he --write`)."""
    runs = {run["label"]: run for run in load_reference("activations")["runs"]}
    accuracy = {label: {p["epoch"]: p["test_acc"] for p in run["history"] if p["type"] == "Evaluation"} for label, run in runs.items()}
    gap = {epoch: 100 * (accuracy["tanh"][epoch] - accuracy["relu"][epoch]) for epoch in (1, 5)}
    grid = {run["label"]: run["history"] for run in load_reference("architecture")["runs"]}
    final = {label: [p["test_acc"] for p in history if p["type"] == "Evaluation" and p["epoch"] == 2][0] for label, history in grid.items()}
    deeper = statistics.fmean(100 * (final[f"conv5-fc{f}"] - final[f"conv1-fc{f}"]) for f in (1, 2, 3))
    lessons = recorded("lessons.json")
    tanh = lesson_margins("activations", "relu − tanh", lessons["activations"]["runs"]).values()
    depth = lesson_margins("architecture", "5 conv − 1 conv", lessons["architecture"]["runs"]).values()
    batchnorm = lessons["batchnorm"]
    default, he = (
        lesson_margins("batchnorm", "batch norm − no batch norm", entry["runs"])
        for entry in (batchnorm, batchnorm["with_init"]["he"])
    )
    assert batchnorm["with_init"]["he"]["arms"] == preset_arms("batchnorm", "quick", "he"), "the He runs are of the preset as it is now"
    return {
        "activations": [
            f"by {gap[1]:.1f} points after the first, by {gap[5]:.1f} after the last",
            f"by {gap[5]:.1f} points at the end",
            f"by {min(tanh):.2f} to {max(tanh):.2f} points",
        ],
        "architecture": [f"{statistics.median(depth):.2f} points at this preset's median seed", f"barely ahead of the 1-conv ones ({deeper:+.1f} points on average)"],
        "batchnorm": [
            "seeds 0–2: " + ", ".join(f"+{default['fp32', seed]:.1f}" for seed in (0, 1)) + f" and +{default['fp32', 2]:.1f} points with the default init; "
            + ", ".join(f"+{he['fp32', seed]:.1f}" for seed in (0, 1)) + f" and +{he['fp32', 2]:.1f} with He",
        ],
    }


def final_phrases() -> dict[str, list[str]]:
    """The embedded classifier's accuracy (pretrained/classifier/results.json), the report's final
    network's training cost per image, counted by torch's FLOP counter, and the fast recipe's
    settings, from its config."""
    (run,) = json.loads((Path(__file__).parent.parent / "pretrained" / "classifier" / "results.json").read_text())["runs"]
    below = "just under" if run["test_acc"] < round(run["test_acc"], 2) else "just over"
    model = create_model(get_experiment("final").arms("report")[0].model)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32)).sum().backward()
    (fast, _) = get_experiment("final").arms("quick")
    return {
        "final": [
            f"{below} {run['test_acc']:.0%} on the 10,000 test images",
            f"{counter.get_total_flops() / 1e9:.1f} GFLOP per training image, forward and backward",
            f"label smoothing {fast.label_smoothing}",
        ]
    }


def phrases() -> dict[str, list[str]]:
    """Every sourced phrase, by experiment (and README), from the committed files above."""
    merged: dict[str, list[str]] = {}
    for source in (inside_phrases(), range_phrases(), margin_phrases(), final_phrases()):
        for name, written in source.items():
            merged.setdefault(name, []).extend(written)
    return merged


def text_of(tab) -> str:
    """What a student reads of a tab's figures: its question and idea, its explanation, its quick preset's note, its
    instrument's caption and the reasons it gives beside a contrary reading, with line breaks read
    as spaces."""
    instrument = instrument_of(tab.experiment_name)
    reasons = [reason.words for gauge in instrument.gauges if gauge.expected for reason in gauge.expected.reasons]
    return " ".join((tab.question, tab.idea, tab.explanation, tab.experiment.quick_note, instrument.how_to_read, *reasons)).replace("\n", " ")


@pytest.mark.parametrize("tab", lesson_tabs(TABS), ids=lambda tab: tab.title)
def test_each_sourced_phrase_is_written_as_its_source_holds_it(tab):
    for written in phrases().get(tab.experiment_name, []):
        assert written in text_of(tab), f"not as its source holds it: {written!r}"


def test_the_readme_quotes_inside_the_network_as_recorded():
    readme = (Path(__file__).parent.parent / "README.md").read_text().replace("\n", " ")
    for written in phrases()["README"]:
        assert written in readme


# A measured figure: a decimal, a percentage, an n-fold, a fraction or an n-times.
MEASURED = re.compile(r"\d+(?:\.\d+)?%|\d+\.\d+|\d+-fold|\b1/\d+\b|\d+ times")
# Figures that are not ours to measure, by experiment, with where they come from.
ELSEWHERE = {
    "activations": {"0.001": "arithmetic, (1/4)^5", "1/4": "sigmoid's largest slope"},
    "momentum": {"0.001": "the report's learning rate"},
    "adaptive-lr": {},
    "batchnorm": {"1/6": "arithmetic: a ReLU keeps half of a variance of 1/3"},
    "architecture": {},
    "final": {"0.005": "the report's loss threshold", "7.8": "the report's training time", "94%": "airbench's paper (Jordan, 2024)"},
    "transfer": {"1.2": "ImageNet's size, 1.2 million photos"},
}


@pytest.mark.parametrize("tab", lesson_tabs(TABS), ids=lambda tab: tab.title)
def test_no_measured_figure_in_a_tab_is_without_a_source(tab):
    """Remove every phrase checked against its source above, and every accuracy checked by
    SOURCES: what measured figures remain must be listed in ELSEWHERE."""
    text = text_of(tab)
    for written in phrases().get(tab.experiment_name, []):
        text = text.replace(written, "")
    text = ACCURACY.sub("", text)
    unsourced = set(MEASURED.findall(re.sub(r"\$[^$]*\$", "", text))) - set(ELSEWHERE[tab.experiment_name])
    assert not unsourced, f"figures with no named source: {sorted(unsourced)}"

"""Every figure a lesson tab quotes beside its controls has one named source: each accuracy in its
explanation and its quick preset's note is one arm's test accuracy at one evaluation of the
experiment's committed reference run (results/reference/), or one of the report's own figures."""

import json
import re
from pathlib import Path

import pytest

from app import TABS
from demo.lesson import lesson_tabs
from training.experiments import get_experiment
from training.readings import DEPTH, FINAL, times
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


def test_the_figures_quoted_from_inside_the_network_are_the_ones_recorded():
    """The Activations and Depth tabs and the README quote benchmarks/inside.py's measurements (the
    report's settings and init, 500 steps, seed 0, fp32): each figure is formatted here from
    results/inside.json, the one place they are kept, and must appear as written."""
    recorded = json.loads((Path(__file__).parent.parent / "results" / "inside.json").read_text())["experiments"]
    relu, tanh = (recorded["activations"]["measured"][arm] for arm in ("relu", "tanh"))
    cells = recorded["architecture"]["measured"]
    fall = {arm: run["act_std"]["conv 1"] / run["act_std"]["conv 5"] for arm, run in (("relu", relu), ("tanh", tanh))}
    dead = [relu["dead_share"][layer] for layer in ("fc 1", "fc 2")]
    deep = cells["conv1-fc1"]["grad_norm"]["conv 1"] / cells["conv5-fc3"]["grad_norm"]["conv 1"]
    activations_text = next(tab for tab in lesson_tabs(TABS) if tab.experiment_name == "activations").explanation
    for quoted in (
        f"ReLU's output scale fell {fall['relu']:.0f}-fold, tanh's {fall['tanh']:.1f}-fold",
        f"got {times(relu['grad_norm']['conv 1'] / tanh['grad_norm']['conv 1'])} tanh's gradient",
        f"took steps {times(relu['update_ratio']['conv 1'] / tanh['update_ratio']['conv 1'])} tanh's size",
        f"{100 * min(dead):.0f}–{max(dead):.0%} of its\nfully-connected units were dead",
        f"still at chance (loss {relu['final_loss']:.2f})\nwhile tanh's was learning ({tanh['final_loss']:.2f})",
    ):
        assert quoted in activations_text
    assert f"it fell {float(f'{deep:.2g}'):.0f}-fold from 1 conv × 1 fc to 5 × 3" in DEPTH.how_to_read
    gradient = {cell: f"{cells[cell]['grad_norm']['conv 1']:.2g}" for cell in ("conv3-fc1", "conv5-fc1", "conv5-fc3")}
    steps = cells["conv1-fc1"]["update_ratio"]["conv 1"] / cells["conv5-fc3"]["update_ratio"]["conv 1"]
    depth_text = next(tab for tab in lesson_tabs(TABS) if tab.experiment_name == "architecture").explanation
    assert (
        f"got {cells['conv1-fc1']['grad_norm']['conv 1']:.3g} (gradient norm) in the 1 × 1 cell, {gradient['conv3-fc1']} with\n3 conv, {float(gradient['conv5-fc1']):.3f} with 5 and "
        f"{gradient['conv5-fc3']} at 5 × 3, {float(f'{deep:.2g}'):.0f} times less, and its steps were {float(f'{steps:.2g}'):.0f} times smaller"
    ) in depth_text
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"ReLU shrinks the signal {fall['relu']:.0f}-fold over the five conv layers (tanh {fall['tanh']:.1f}-fold)" in readme
    assert f"falls {float(f'{deep:.2g}'):.0f}-fold from 1 conv × 1 fc to 5 × 3" in readme


@pytest.mark.parametrize("experiment_name, instrument, written", [("architecture", DEPTH, "got {}–{} of the shallowest's, seeds 0–4"), ("final", FINAL, "its steps were {}–{} of Adadelta's")])
def test_the_ranges_an_instrument_quotes_are_its_recorded_seeds(experiment_name, instrument, written):
    """A range under an instrument's plot is its gauge's min and max over results/readings.json."""
    recorded = json.loads((Path(__file__).parent.parent / "results" / "readings.json").read_text())["experiments"][experiment_name]
    (gauge,) = instrument.gauges
    values = [run["readings"][gauge.name] for run in recorded["runs"]]
    assert written.format(f"{min(values):.2f}", f"{max(values):.2f}") in instrument.how_to_read.replace("\n", " ")


def test_the_margins_the_tabs_quote_are_their_sources():
    """Activations' gaps come from its reference run, Batch normalization's default-init margins from
    the quick preset's recorded seeds (results/lessons.json)."""
    runs = {run["label"]: run for run in load_reference("activations")["runs"]}
    accuracy = {label: {p["epoch"]: p["test_acc"] for p in run["history"] if p["type"] == "Evaluation"} for label, run in runs.items()}
    gap = {epoch: 100 * (accuracy["tanh"][epoch] - accuracy["relu"][epoch]) for epoch in (1, 5)}
    tabs = {tab.experiment_name: tab for tab in lesson_tabs(TABS)}
    assert f"by {gap[1]:.1f} points\nafter the first, by {gap[5]:.1f} after the last" in tabs["activations"].explanation
    assert f"by {gap[5]:.1f} points at the end" in tabs["activations"].experiment.quick_note
    recorded = json.loads((Path(__file__).parent.parent / "results" / "lessons.json").read_text())["experiments"]["batchnorm"]["runs"]
    margins = {run["seed"]: 100 * (run["accuracies"]["batch norm"] - run["accuracies"]["no batch norm"]) for run in recorded if run["precision"] == "fp32"}
    written = f"+{margins[0]:.1f}, +{margins[1]:.1f} and +{margins[2]:.1f} points with the default\ninit"
    assert written in tabs["batchnorm"].explanation

"""What each piece the Final CNN tab's quick preset borrows from airbench is worth.

The quick preset (`experiments.FAST_RECIPE`) goes beyond the report with pieces from the fast
CIFAR-10 work. An ablation takes one of them out and changes nothing else; `benchmarks/ablations.py`
trains the preset with each taken out, at several seeds on the weakest host we target, and writes
`results/ablations.json`, which the tab and the README show. Pieces that act only on the test
images are taken out of the full recipe's own trained weights: training does not see them.
"""

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from training.config import TrainConfig, changed

ABLATIONS_FILE = Path(__file__).parent.parent / "results" / "ablations.json"
TEST_TIME_FIELDS = {"test_time_flip", "test_time_shift"}
FULL_RECIPE = "nothing (the full quick preset)"


@dataclass(frozen=True)
class Ablation:
    piece: str  # the borrowed piece taken out, as the table names it
    instead: str  # what the run does in its place
    changes: dict  # TrainConfig fields changed from the preset; model_overrides merge into its own

    @property
    def test_time_only(self) -> bool:
        """True where only the evaluation changes, so the full recipe's weights are reused."""
        return set(self.changes) <= TEST_TIME_FIELDS

    def applied(self, config: TrainConfig) -> TrainConfig:
        return changed(config, self.changes)


ABLATIONS = (
    Ablation("whitening first layer", "the same 2×2 conv, learned from PyTorch's random init", {"model_overrides": {"whitening": False}}),
    Ablation("one-cycle schedule", "a constant rate, the schedule's peak", {"lr_schedule": "constant"}),
    Ablation("label smoothing 0.2", "plain cross-entropy", {"label_smoothing": 0.0}),
    Ablation("lookahead", "the weights as the optimizer leaves them", {"lookahead": False}),
    Ablation("alternating flips", "random flips", {"alternating_flip": False}),
    Ablation("reflect padding", "zero padding", {"crop_padding_mode": "zeros"}),
    Ablation("64× rate for batch-norm shifts", "one rate for every weight", {"norm_lr_scale": 1.0}),
    Ablation("batch norm's momentum 0.4 and eps 1e-12", "PyTorch's 0.1 and 1e-5", {"model_overrides": {"norm_momentum": 0.1, "norm_eps": 1e-5}}),
    Ablation("test images shifted by a pixel", "the test image and its mirror", {"test_time_shift": False}),
    Ablation("every test-time view", "the test image alone", {"test_time_flip": False, "test_time_shift": False}),
)


def recorded(path: Path | None = None) -> dict | None:
    """The recorded ablations ({"host", "seeds", "rows": [{"piece", "instead", "runs": [{"seed",
    "test_acc", "train_time_s"}]}]}, the full recipe first), or None where none were recorded."""
    try:
        return json.loads((path or ABLATIONS_FILE).read_text())
    except (OSError, ValueError):
        return None


def table_rows(results: dict) -> list[dict[str, str]]:
    """The recorded ablations as table rows, by column: what was taken out and what took its
    place, each seed's accuracy, the mean, and the mean's change from the full recipe's in points."""
    full = statistics.fmean(run["test_acc"] for run in results["rows"][0]["runs"])
    rows = []
    for row in results["rows"]:
        accuracies = {run["seed"]: run["test_acc"] for run in row["runs"]}
        mean = statistics.fmean(accuracies.values())
        seeds = {f"seed {s}": f"{100 * accuracies[s]:.2f}%" for s in results["seeds"]}
        change = "—" if row["piece"] == FULL_RECIPE else f"{100 * (mean - full):+.2f}"
        rows.append({"taken out": row["piece"], "in its place": row["instead"], **seeds, "mean": f"{100 * mean:.2f}%", "points": change})
    return rows


def markdown_table(results: dict) -> str:
    """The recorded ablations as a Markdown table (see `table_rows`), for the README and the docs."""
    rows = table_rows(results)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row.values()) + " |" for row in rows])

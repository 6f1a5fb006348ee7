"""The instrument beside a training tab's curves: one small plot of what happens inside the network
(the metric its experiment reads, training.readings, by layer and per arm in the arm's colour) and
the sentences measured from this run, redrawn live as the readings arrive.

The view reads the run's results (each arm's `instruments` records) and nothing else, so a replay
from the run cache draws exactly what the live run drew.
"""

import math

import gradio as gr
import pandas as pd

from demo.views import AXIS_FORMAT, PLOT_MIN_WIDTH, colour_map, series_of
from training.readings import DEPTH, Instrument, Runs, instrument_of, profile
from training.results import Recorder

DEPTH_SERIES = tuple(f"{f} fc" for f in range(1, 4))
# Each metric's axis in plain words (the title gives the notation), short: an axis title longer than
# the plot is tall pushes the plot's title past its top edge.
AXIS_WORDS = {
    "grad_norm": "gradient size",
    "update_ratio": "step size",
    "step_cosine": "step agreement",
    "act_std": "output spread",
    "travelled": "distance moved",
    "dead_share": "share of dead units",
}
SMALL_VALUES_FORMAT = ".2~g"


def arm_runs(recorder: Recorder | None) -> Runs:
    """Each arm's instrument records, by label."""
    return {label: run.get("instruments", []) for label, run in recorder.runs.items()} if recorder else {}


class InstrumentView:
    """The instrument of an experiment's tab: `build()` lays it out, `frame(recorder)` draws it."""

    def __init__(self, experiment_name: str, series: tuple[str, ...]):
        self.instrument: Instrument = instrument_of(experiment_name)
        self.by_depth = self.instrument is DEPTH
        # A grid's cells are drawn as one line per fully-connected count, across conv counts.
        self.series = DEPTH_SERIES if self.by_depth else series
        self.value = AXIS_WORDS[self.instrument.metric] + (" (log₁₀)" if self.instrument.log else "")
        self.x = "conv layers" if self.by_depth else "layer"

    def build(self) -> tuple[gr.Column, gr.LinePlot, gr.Markdown]:
        """The plot, in a column hidden until a run draws it (the reference runs hold no readings),
        and the sentences."""
        with gr.Row(equal_height=False):
            with gr.Column(min_width=PLOT_MIN_WIDTH, visible=False) as column:
                plot = gr.LinePlot(
                    self.rows({}), x=self.x, y=self.value, color="arm", color_map=colour_map(self.series), colors_in_legend=list(self.series),
                    title=self.instrument.title, height=240, min_width=PLOT_MIN_WIDTH, color_title="arm", show_label=False, tooltip="all",
                    # Logarithms read with two decimals; small plain values (a distance of 0.003) with two digits.
                    y_axis_format=AXIS_FORMAT if self.instrument.log else SMALL_VALUES_FORMAT,
                    x_label_angle=0 if self.by_depth else -40,  # the layers' names fit a phone's width
                    y_lim=[-1, 1] if self.instrument.metric == "step_cosine" else None,
                )
            with gr.Column(min_width=PLOT_MIN_WIDTH):  # as wide as the plot, or below it: never a sliver beside it
                sentences = gr.Markdown(self.words({}), min_height=80)
        return column, plot, sentences

    def rows(self, runs: Runs) -> pd.DataFrame:
        """One row per (x, arm): the arm's median reading there; every series has a row from the
        first frame on, since the plot fixes its colours to the series it first draws."""
        rows = []
        for label, records in runs.items():
            if self.by_depth:
                first = list(profile(records, self.instrument.metric).values())[:1]
                cell = label.split("-")
                rows += [(cell[0].removeprefix("conv"), self.scaled(v), cell[1].removeprefix("fc") + " fc") for v in first]
            else:
                rows += [(layer, self.scaled(v), series_of(label, self.series)) for layer, v in profile(records, self.instrument.metric).items()]
        first = rows[0][0] if rows else ""
        rows = [(first, math.nan, name) for name in self.series] + rows
        return pd.DataFrame(rows, columns=[self.x, self.value, "arm"]).astype({self.value: float})

    def scaled(self, value: float) -> float:
        if not self.instrument.log:
            return value
        return math.log10(value) if value > 0 else math.nan

    def words(self, runs: Runs, configs: list[dict] = ()) -> str:
        numbers = self.instrument.numbers(runs)  # read once: the frame is redrawn a few times a second
        measured, contrary = self.instrument.sentences(numbers), self.instrument.contrary(numbers, configs)
        if measured:
            said = " ".join(measured) + "".join(f"\n\n**{line}**" for line in contrary)
        elif any(runs.values()):
            said = "the plot shows each arm's readings (the sentences here compare the tab's default arms)."
        else:
            said = "Train to read it from your run."
        return f"**Inside the network, this run:** {said}\n\n{self.instrument.how_to_read}"

    def frame(self, recorder: Recorder | None) -> tuple:
        runs = arm_runs(recorder)
        data = self.rows(runs)
        order = list(dict.fromkeys(data[self.x]))  # the network's order (a grid's: by conv count)
        configs = [run["config"] for run in recorder.runs.values()] if recorder else []
        return gr.LinePlot(data, sort=sorted(order, key=int) if self.by_depth and data[self.x].all() else order), self.words(runs, configs)


class Drawing:
    """One stream's drawing of an instrument: it redraws the plot only when new readings came (a
    redraw costs the server's CPU and the browser's), and always on the run's last update."""

    def __init__(self, view: InstrumentView):
        self.view = view
        self.readings = -1

    def frame(self, update) -> tuple:
        runs = update.recorder.runs.values() if update.recorder else []
        readings = sum(len(run.get("instruments", [])) for run in runs)
        if readings == self.readings and not (update.finished or update.stopped):
            return gr.skip(), gr.skip()
        self.readings = readings
        return self.view.frame(update.recorder)

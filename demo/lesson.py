"""The one interface a lesson tab declares (after micrograd: peers share one small interface).

A lesson tab is a `Lesson`: its experiment, its title and explanation, its own controls, and one
function, `arms`, that turns the shared settings (a checked `demo.settings.Settings`) and its own
controls' values into the arms to train. The shared panel (demo.panel) builds the rest from that:
the Train handler and its public endpoint (named after `arms`'s own parameters, then the shared
settings), its GPU price, Train, Stop and Stop's report, the CPU fallback, the plots and table.
A tab that draws something other than loss and accuracy curves overrides `plots` and `frame`.
"""

import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass

from demo.instruments import InstrumentView
from demo.panel import GRADIO_PARAMETERS, SHARED, ComparisonPanel, training_handler
from demo.settings import DEFAULT_PRESET, Settings
from demo.views import curves, line_plots, plot_series, reference_caption, results_table
from models import model_arguments
from training.config import TrainConfig
from training.experiments import Experiment, get_experiment


@dataclass(eq=False)
class Lesson:
    """A tab of one of the report's comparisons. Subclasses may override `controls`, `arms`,
    `plots` and `frame` or `frames`."""

    title: str  # the tab's name in the tab bar
    experiment_name: str  # a name in training.experiments
    api_name: str  # its public training endpoint, /api_name
    explanation: str  # Markdown with maths: the why, folded under the run
    series: tuple[str, ...] = ()  # the plots' series, one colour each; empty: the experiment's own arms
    question: str = ""  # the one line the tab asks, first
    idea: str = ""  # the short paragraph that gives the idea, before the controls and Train

    @property
    def experiment(self) -> Experiment:
        return get_experiment(self.experiment_name)

    @property
    def plot_series(self) -> tuple[str, ...]:
        """The arms the plots can show, one colour each, fixed when the tab is built."""
        return self.series or plot_series(self.experiment)

    @functools.cached_property
    def instrument(self) -> InstrumentView:
        """The view inside the network beside the curves (training.readings names what it reads)."""
        return InstrumentView(self.experiment_name, self.plot_series)

    @property
    def chooses_init(self) -> bool:
        """Only models that draw their own first weights have an init to choose (not AlexNet)."""
        return "init" in model_arguments(self.experiment.base[DEFAULT_PRESET].model)

    def controls(self) -> list:
        """The tab's own inputs, laid out under its explanation, in the order `arms` takes them."""
        return []

    def arms(self, settings: Settings) -> list[TrainConfig]:
        """The arms to train; a subclass adds its own controls' values as parameters with defaults
        (they name the endpoint's parameters) and raises ValueError for a bad one."""
        return settings.arms(self.experiment)

    @functools.cached_property
    def own_parameters(self) -> list[inspect.Parameter]:
        return list(inspect.signature(self.arms).parameters.values())[1:]

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        shared = [p for p in SHARED if p.name != "init" or self.chooses_init]
        return inspect.Signature([*self.own_parameters, *shared, *GRADIO_PARAMETERS])

    @functools.cached_property
    def handler(self):
        return training_handler(self)

    @functools.cached_property
    def cpu_handler(self):
        return training_handler(self, on_cpu=True)

    def warm_up_arms(self) -> list[TrainConfig]:
        """The arms of the tab's defaults, which a server that serves a class trains at start."""
        return self.arms(Settings(DEFAULT_PRESET))

    @property
    def opens_with_plots(self) -> bool:
        """Whether the plots show before the first Train: they do when a reference run draws them."""
        return reference_caption(self.experiment_name) is not None

    def caption(self) -> str | None:
        """What the plots' dashed curves are, under them."""
        return reference_caption(self.experiment_name)

    def plots(self, panel: ComparisonPanel) -> list:
        """The output components the run draws into, laid out in the panel's plot row."""
        return list(line_plots(self.experiment, self.plot_series))

    def frame(self, update, session) -> tuple:
        """What every output shows at one update: the plots, table, status and session result, in
        the order of the panel's outputs."""
        table = results_table(self.experiment, update.recorder, stopped=update.stopped)
        return *curves(self.experiment, update.recorder, self.plot_series), table, update.status, session

    def frames(self, updates: Iterator) -> Iterator[tuple]:
        """The outputs at each (update, session result) of a run."""
        for update, session in updates:
            yield self.frame(update, session)

    def build(self) -> ComparisonPanel:
        panel = ComparisonPanel(self)
        panel.wire()
        return panel


def lesson_tabs(tabs) -> list[Lesson]:
    """The lesson tabs among the app's tabs."""
    return [tab for tab in tabs if isinstance(tab, Lesson)]


"""CNN Lab: assemble the tabs and serve them.

    python app.py    # http://localhost:7860 (GRADIO_SERVER_PORT and GRADIO_SERVER_NAME are honoured)
"""

import os

import training  # noqa: F401  first: it sets PyTorch's MPS fallback before torch loads
import gradio as gr

from demo import classifiers
from demo.tabs import activations, adaptive_lr, batchnorm, class_page, depth, final_cnn, momentum, transfer, your_images
from demo.gpu import ON_ZEROGPU
from demo.lesson import lesson_tabs
from demo.links import link_applier
from demo.panel import MAX_STREAMS, warm_up
from demo.photo_sets import MAX_TOTAL_BYTES
from demo.settings import GPU_AVAILABLE
from serving.classroom import classroom
from training.datasets import prefetch

HOST = "ZeroGPU" if ON_ZEROGPU else "a GPU" if GPU_AVAILABLE else "a CPU"
ZEROGPU_NOTE = " Each Train borrows a GPU for the seconds its run needs, from your daily GPU quota." if ON_ZEROGPU else ""
INTRO = f"""# CNN Lab
**Start here:** each tab asks one question. Guess the answer, press **Train**, and watch two networks that differ
in that one thing learn side by side. Running on {HOST}.{ZEROGPU_NOTE}
"""

# System fonts: the default theme's web fonts come from Google's servers, which a classroom behind a
# firewall or an offline laptop cannot reach (headings then mix two fonts).
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])

# On a phone: Gradio's Markdown tables may break a word anywhere ("sig/m/oid" in narrow columns),
# so they break between words, and the KaTeX inside them at its operators; and the page's 32 px
# margins become 8 px, since the plots' legends of five arms need the width.
CSS = """
.prose table th, .prose table td { overflow-wrap: normal; word-break: normal; }
@media (max-width: 480px) { .cnnlab-page { margin-left: -24px; margin-right: -24px; width: calc(100% + 48px); } }
"""

# Events Gradio's queue holds waiting to start: a class of thirty, each of whose clicks starts a few
# (Train and the outputs it reveals), with room for a second class. Gradio's own default on a
# ZeroGPU Space, where it is not given, is 1: a second student's click would be turned away.
MAX_WAITING_EVENTS = 256
# Gradio recomputes a summary of its last 10,000 events (a pandas group-by, holding the GIL) after
# every event by default, for its monitoring page alone; beside a class's thousands of answers it
# is redone every this many events instead.
ANALYTICS_EVERY_EVENTS = 1000
# Gradio's copies of uploads and answers: every 10 minutes, those made over 50 minutes ago go, so
# that nothing of a session that never says goodbye outlives the hour (docs/classroom.md).
DELETE_CACHE = (600, 3000)

# The students' tabs, in the tab bar's order: the one list the tests, the benchmarks and the warm-up
# read. It opens on Momentum: its lesson is the plainest (one slider, a picture, a gap beyond any
# seed's). The teacher's Class page follows them.
TABS = (momentum.TAB, activations.TAB, adaptive_lr.TAB, batchnorm.TAB, depth.TAB, final_cnn.TAB, transfer.TAB, your_images.TAB)
TEACHER_TAB = class_page.TAB


def end_session(request: gr.Request) -> None:
    """A browser session ended (its tab closed or reloaded): what it holds goes at once (its
    photos, the pictures of its answers: serving.sessions)."""
    classroom.sessions.end(request.session_hash)


# After a link's values are set: `run=1` presses the linked tab's Train (a run in the cache replays),
# once the tab is drawn and a frame has passed: a click in the same tick as the values' update
# trained with some of the old ones.
PRESS_TRAIN = """() => {
  const link = new URLSearchParams(window.location.search);
  if (link.get('run') !== '1') return;
  const started = Date.now();
  const press = () => {
    const train = document.getElementById('train-' + link.get('tab'));
    if (train && train.offsetParent !== null) setTimeout(() => train.click(), 250);
    else if (Date.now() - started < 10000) requestAnimationFrame(press);
  };
  requestAnimationFrame(press);
}"""


def tab_id(tab) -> str:
    """A tab's id in the tab bar: its training endpoint's name, as links name it."""
    return getattr(tab, "api_name", tab.title)


def build_app(tabs=TABS) -> gr.Blocks:
    with gr.Blocks(title="CNN Lab", delete_cache=DELETE_CACHE) as app, gr.Column(elem_classes="cnnlab-page"):
        gr.Markdown(INTRO)
        link_note = gr.Markdown()
        panels = {}
        with gr.Tabs(overflow_behavior="wrap") as tab_bar:  # on a phone every tab stays in sight, on two or three rows
            for tab in tabs:
                with gr.Tab(tab.title, id=tab_id(tab)):
                    panels[tab] = tab.build()
            with gr.Tab(TEACHER_TAB.title, id=tab_id(TEACHER_TAB)) as teacher:
                TEACHER_TAB.build(teacher)
        lessons = lesson_tabs(tabs)
        controls = {lesson: [*panels[lesson].own, *panels[lesson].settings] for lesson in lessons}
        outputs = [tab_bar, *(component for lesson in lessons for component in controls[lesson]), link_note]
        app.load(link_applier(lessons, controls, tab_id), None, outputs, api_visibility="private").then(None, js=PRESS_TRAIN)
        app.unload(end_session)
    # Classification runs beside training; trainings share one queue (see ComparisonPanel.wire).
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_EVERY_EVENTS))  # read as the queue is made
    return app.queue(default_concurrency_limit=4, max_size=MAX_WAITING_EVENTS)


# Gradio's worker threads: one per training stream (panel.MAX_STREAMS) and Gradio's own 40 beside.
MAX_THREADS = MAX_STREAMS + 40


def warm_wanted() -> bool:
    """CNNLAB_WARM=1 trains every tab's defaults at start (demo.panel.warm_up); on by default on a
    CPU Space, which serves classes, and off on a laptop (it would take its CPU for minutes unasked)
    and on ZeroGPU (it would spend GPU quota nobody asked for)."""
    default = "1" if os.environ.get("SPACE_ID") and not ON_ZEROGPU else "0"
    return os.environ.get("CNNLAB_WARM", default) == "1" and not ON_ZEROGPU


def load_classifiers() -> None:
    """Load the CIFAR-10 classifier (CIFAR10_MODEL, else the embedded one) and ANTS_BEES_MODEL at
    start, so the first upload answers at once."""
    classifiers.cifar10_model.get()
    transfer.ants_bees_model.get()


if __name__ == "__main__":
    if os.environ.get("SPACE_ID"):  # on a Hugging Face Space: have CIFAR-10 ready before the first Train
        prefetch(["cifar10"])
    load_classifiers()
    app = build_app()
    if warm_wanted():
        warm_up(TABS)
    # The largest upload is a zip of your images; a single photo over demo.uploads.MAX_UPLOAD_BYTES is
    # refused by its handler. Threads: a stream waiting its turn holds one while it waits for news,
    # and classification must still find one free.
    app.launch(max_file_size=MAX_TOTAL_BYTES, theme=THEME, css=CSS, max_threads=MAX_THREADS)

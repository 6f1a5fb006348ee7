"""The teacher's Class page: what the class has run on this server, experiment by experiment and
setting by setting (runs, their gaps beside the report's, the predictions), the record as CSV, and
clearing it, which needs the teacher key. It reads serving.class_view's summary of the record.
"""

import os
import sqlite3
import tempfile
from dataclasses import astuple, fields
from pathlib import Path

import gradio as gr
import pandas as pd

from serving.class_record import class_record, clear_with_key, teacher_key_set
from serving.class_view import Setting, as_csv, summary

INTRO = """### Your class's runs
Every comparison that finished on this server, trained or replayed, at a line per experiment and setting.
A **run** is one training (a seed on a device); students who ran the same one count once as a run and
each as a finished run. Students see the same lines for their own settings under each run; nobody's
session or name is kept.
"""
COLUMNS = {
    "experiment": "Experiment", "differs": "Settings", "runs": "Runs", "finished": "Finished by students",
    "seeds": "Seeds", "margins": "Gap (points)", "report": "Report's gap", "right": "Predicted right",
    "wrong": "Predicted wrong", "unpredicted": "No prediction",
}
COLUMN_WIDTHS = ["200px", "180px", "70px", "100px", "80px", "110px", "90px", "100px", "100px", "110px"]
NO_KEY = """**Clearing is off:** no teacher key is set on this server, so nobody can clear the record. To set one on a
Space, add a secret named `CNNLAB_TEACHER_KEY` (the Space's Settings → Variables and secrets → New secret)
and restart the Space; on your own machine, start the app with the variable `CNNLAB_TEACHER_KEY` set."""


def summary_table() -> pd.DataFrame:
    """The record's summary, a row per experiment and setting."""
    rows = [astuple(setting) for setting in summary(class_record())]
    return pd.DataFrame(rows, columns=[COLUMNS[f.name] for f in fields(Setting)])


def where_kept() -> str:
    repo = os.environ.get("CNNLAB_CLASS_REPO")
    kept = f"and copied to the Hub dataset `{repo}` every few minutes" if repo else "only on this server's disk (a Space's disk is wiped when it restarts)"
    return f"<small>The record is kept in `{class_record().path}` {kept}; see docs/teaching.md.</small>"


CSV_FOLDER = Path(tempfile.mkdtemp(prefix="cnnlab-class-"))


def download_csv() -> str:
    """The record as a CSV file, rewritten at each download (one file, however often asked)."""
    path = CSV_FOLDER / "cnnlab-class-record.csv"
    path.write_text(as_csv(class_record()))
    return str(path)


def clear(key: str) -> tuple:
    """Clear the record with the teacher key: what happened, and the table now."""
    try:
        cleared = clear_with_key(class_record(), key)
    except PermissionError as refused:
        return f"**Not cleared.** {refused}", gr.skip(), ""
    except (OSError, sqlite3.Error) as failed:  # a full or read-only disk: said on the page
        return f"**Not cleared:** the record could not be written ({failed}).", gr.skip(), ""
    return f"**Cleared:** {cleared} finished runs were deleted.", summary_table(), ""


class ClassPage:
    title = "Class"
    api_name = "class"

    def build(self, page: gr.Tab) -> None:
        """Lay the page out in `page`, whose table is read when the page is opened (not at every
        student's page load: at 20,000 runs the summary takes half a second) and on Refresh."""
        gr.Markdown(INTRO)
        refresh = gr.Button("Refresh", size="sm")
        # Wide enough for each heading's longest word: a narrow column broke "Runs" into "Run s".
        table = gr.Dataframe(headers=[COLUMNS[f.name] for f in fields(Setting)], label="Runs by experiment and setting (the table scrolls sideways)", interactive=False, wrap=True, column_widths=COLUMN_WIDTHS)
        download = gr.DownloadButton("Download the record (CSV)", size="sm")
        gr.Markdown(where_kept())
        with gr.Accordion("Clear the record (needs the teacher key)", open=False):
            if not teacher_key_set():
                gr.Markdown(NO_KEY)
            key = gr.Textbox(type="password", label="Teacher key", interactive=teacher_key_set())
            clear_button = gr.Button("Clear every run", variant="stop", interactive=teacher_key_set())
            said = gr.Markdown()
        gr.on([page.select, refresh.click], summary_table, None, table, api_visibility="private")
        download.click(download_csv, None, download, api_visibility="private")
        clear_button.click(clear, key, [said, table, key], api_visibility="private")


TAB = ClassPage()

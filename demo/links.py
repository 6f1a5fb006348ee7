"""Experiment links: a teacher hands out `?tab=compare_momentum&beta=0.5&seed=3&run=1`, and the page
opens on that tab with those settings (and, with `run=1`, presses Train: a run in the cache replays).

A link's parameters are the tab's public endpoint's, by name (its own controls', then the shared
settings'), read as the API reads them: each is checked by the same validator, with the same
message, one at a time, so that one bad value is said on the page while the others apply. Each tab
also gives the link for what is on screen ("Link to these settings").
"""

import os
from collections.abc import Callable
from urllib.parse import urlencode

import gradio as gr

from demo.settings import DEFAULT_PRESET, Settings, checked_arms

# The shared settings' types as a link writes them (None defaults say nothing of the type).
SHARED_TYPES = {"preset": str, "epochs": int, "n_train": int, "lr": float, "batch_size": int, "seed": int, "init": str}
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
RUN = "run"


def parameters(lesson) -> list[str]:
    """A lesson's link parameters, in its endpoint's order: its own controls', then the shared."""
    return [p.name for p in lesson.own_parameters] + [name for name in Settings.__dataclass_fields__ if name != "init" or lesson.chooses_init]


def parse(text: str, like) -> object:
    """A link's text as the type of `like` (a parameter's default or type): a ValueError that says
    what was expected otherwise. A list is comma-separated."""
    kind = like if isinstance(like, type) else type(like)
    if kind is bool:
        if text.lower() not in TRUE | FALSE:
            raise ValueError(f"must be true or false, got {text!r}")
        return text.lower() in TRUE
    if kind in (tuple, list):
        element = type(like[0]) if like else str
        return [parse(item.strip(), element) for item in text.split(",") if item.strip()]
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"must be {'an integer' if kind is int else 'a number' if kind is float else 'text'}, got {text!r}") from None


def checked_value(lesson, name: str, text: str) -> object:
    """One link parameter's value, checked by the validator the endpoint uses (its message on a
    ValueError)."""
    own = {p.name: p.default for p in lesson.own_parameters}
    if name in own:
        value = parse(text, own[name])
        checked_arms(lesson.arms(Settings(DEFAULT_PRESET), **{name: value}))
        return value
    value = parse(text, SHARED_TYPES[name])
    Settings.checked(**{"preset": DEFAULT_PRESET, name: value})
    return value


def read_link(lessons: list, query: dict[str, str]) -> tuple[object | None, dict[str, object], list[str]]:
    """The lesson a link names, its checked values by parameter, and what it could not apply."""
    wanted = query.get("tab")
    if not wanted:
        return None, {}, []
    by_api = {lesson.api_name: lesson for lesson in lessons}
    if wanted not in by_api:
        return None, {}, [f"tab: no tab is named {wanted!r}; the tabs are {', '.join(by_api)}."]
    lesson, values, refused = by_api[wanted], {}, []
    names = parameters(lesson)
    for name, text in query.items():
        if name in ("tab", RUN, "__theme"):
            continue
        if name not in names:
            refused.append(f"{name}: this tab takes {', '.join(names)}.")
            continue
        try:
            values[name] = checked_value(lesson, name, text)
        except (ValueError, TypeError) as error:
            refused.append(f"{name}={text}: {error}")
    return lesson, values, refused


def space_link(lesson, *values) -> str:
    """The link a tab gives for its controls: on a Space, its page on huggingface.co (which hands
    its query string to the app inside it); elsewhere the query alone, which the page puts after
    its own address."""
    space = os.environ.get("SPACE_ID")
    return (f"https://huggingface.co/spaces/{space}" if space else "") + link_query(lesson, *values)


def link_query(lesson, *values) -> str:
    """The query string of a link to a lesson's controls as they are (values in `parameters` order)."""
    pairs = [("tab", lesson.api_name)]
    for name, value in zip(parameters(lesson), values):
        if value is None or value == "":
            continue
        written = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value).lower() if isinstance(value, bool) else str(value)
        pairs.append((name, written))
    return "?" + urlencode(pairs, safe=",")


def link_applier(lessons: list, controls: dict, tab_id: Callable[[object], str]):
    """The page-load handler. Its outputs: the tabs, then every lesson's controls (in `parameters`
    order, lesson after lesson), then the note. It selects the tab a link names, sets the values it
    gives, and says what it applied and what it refused."""

    def apply(request: gr.Request):
        lesson, values, refused = read_link(lessons, dict(request.query_params) if request else {})
        updates = [
            gr.update(value=values[name]) if owner is lesson and name in values else gr.skip()
            for owner in lessons
            for name, _ in zip(parameters(owner), controls[owner])
        ]
        note = ""
        if lesson is not None:
            applied = ", ".join(f"{name} {value}" for name, value in values.items())
            note = f"**This link opened {lesson.title}**" + (f" with {applied}." if applied else ".")
        note += "".join(f"\n\n**Not applied:** {line}" for line in refused)
        return gr.Tabs(selected=tab_id(lesson)) if lesson is not None else gr.skip(), *updates, note

    return apply

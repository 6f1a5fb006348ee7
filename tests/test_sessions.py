"""Each browser session's state in one place (serving.sessions), ended as one."""

from pathlib import Path

import pytest
from PIL import Image

from demo import gpu, photo_sets, views
from serving.classroom import classroom
from serving.sessions import Sessions
from training.datasets import _registered
from handlers import Session
from test_your_images import shapes_zip


def test_past_its_bound_the_session_seen_longest_ago_ends_and_says_so():
    sessions, ended = Sessions(limit=2), []
    sessions.on_end(lambda session: ended.append(session.id))
    for name in ("a", "b"):
        sessions.get(name)
    sessions.get("a")  # seen again: now b is the one seen longest ago
    sessions.get("c")
    assert ended == ["b"] and sessions.find("a") and not sessions.find("b")


def test_a_session_idle_for_the_hour_ends_at_the_next_request(monkeypatch):
    sessions, ended = Sessions(limit=10), []
    sessions.on_end(lambda session: ended.append(session.id))
    sessions.get("idle")
    monkeypatch.setattr("serving.sessions.IDLE_S", 0)
    sessions.get("busy")
    assert ended == ["idle"] and sessions.find("busy")


def test_what_a_session_holds_goes_when_it_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "SHOWN_DIR", tmp_path / "shown")
    dataset = photo_sets.register(photo_sets.from_zip(shapes_zip(tmp_path / "p.zip")), "leaving", 0).name
    picture = Path(views.photo_file(Image.new("RGB", (20, 10)), "leaving"))
    with pytest.raises(gpu.GpuRefused):
        raise gpu.refusal("leaving", "No GPU now", api_call=False)
    held = classroom.sessions.find("leaving")
    assert held.photos == dataset and dataset in _registered and held.gpu_refused and gpu.was_refused(Session("leaving"))
    classroom.sessions.end("leaving")  # its page closed
    assert dataset not in _registered and not picture.exists()
    assert classroom.sessions.find("leaving") is None and not gpu.was_refused(Session("leaving"))

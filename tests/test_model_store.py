"""The bounded store of the models sessions trained: the oldest go first, and each tab then says so."""

import gc
import pickle

import pytest
import torch

from demo.tabs import final_cnn, transfer, your_images
from serving import model_store
from serving.model_store import HeldModels, weight_bytes
from models import create_model


def test_past_the_bound_the_session_that_trained_longest_ago_loses_its_models(monkeypatch):
    model = create_model("cnn-tiny")
    monkeypatch.setattr(model_store, "MAX_BYTES", int(3.5 * weight_bytes(model)))
    first, second = HeldModels({"a": model}), HeldModels({"a": create_model("cnn-tiny"), "b": create_model("cnn-tiny")})
    assert not first.dropped and first["a"] is model and set(second) == {"a", "b"}  # 3 models: within the bound
    third = HeldModels({"a": create_model("cnn-tiny")})  # 4: the oldest session's go
    assert first.dropped and len(first) == 0 and "a" not in first and first.get("a") is None
    assert not second.dropped and not third.dropped
    alone = HeldModels({str(i): create_model("cnn-tiny") for i in range(4)})  # over the bound by itself: kept, the rest go
    assert second.dropped and third.dropped and len(alone) == 4


def test_a_handle_nobody_holds_lets_go_of_its_models():
    kept, replaced = HeldModels({"a": create_model("cnn-tiny")}), HeldModels({"a": create_model("cnn-tiny")})
    key = replaced.key
    del replaced  # the session trained again: its state holds the newer run's handle
    gc.collect()
    assert key not in model_store._store and kept.key in model_store._store


def test_a_handle_travels_between_processes_with_its_models():
    model = create_model("cnn-tiny")
    arrived = pickle.loads(pickle.dumps(HeldModels({"a": model})))  # as from ZeroGPU's worker to the app
    assert arrived.key in model_store._store and not arrived.dropped
    assert all(torch.equal(x, y) for x, y in zip(arrived["a"].state_dict().values(), model.state_dict().values()))


def test_every_tab_says_a_dropped_sessions_models_were_let_go(monkeypatch, tmp_path):
    monkeypatch.setattr(model_store, "MAX_BYTES", 1)
    gone = {"results": {"preset": "quick"}, "models": HeldModels({"final": create_model("cnn-tiny")}), "spec": None}
    HeldModels({"final": create_model("cnn-tiny")})  # a newer session's models push them out
    monkeypatch.setattr(transfer.ants_bees_model, "_loaded", True)  # no ANTS_BEES_MODEL: the session's own model answers
    monkeypatch.setattr(transfer.ants_bees_model, "model", None)
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(photo)
    for call in (
        lambda: final_cnn.classifier_named(final_cnn.SESSION, gone),
        lambda: transfer.classify_ants_bees(str(photo), "fine tuning", gone),
        lambda: your_images.classify_your_images(str(photo), "fine tuning", gone),
        lambda: your_images.download_models(gone),
    ):
        with pytest.raises(Exception, match="let go to make room.*press Train to train again"):
            call()

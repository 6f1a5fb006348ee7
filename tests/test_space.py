"""The README's Space card and the pins agree with the code and with what ZeroGPU runs
(demo/zerogpu.toml, ZeroGPU's documented versions)."""

import re
import tomllib
from pathlib import Path

from huggingface_hub import SpaceCard

from models import create_model
from training.publish import PRELOADED_FILES

ROOT = Path(__file__).parent.parent
ZEROGPU = tomllib.loads((ROOT / "demo" / "zerogpu.toml").read_text())


def pin(name: str) -> str:
    return re.search(rf"^{name}==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)


def test_the_card_and_the_pins_are_what_zerogpu_runs():
    card = SpaceCard.load(ROOT / "README.md").data
    assert card.sdk == "gradio" and card.sdk_version == pin("gradio")  # ZeroGPU runs the Gradio SDK only
    assert any(version.startswith(f"{card.python_version}.") for version in ZEROGPU["python_versions"]), card.python_version
    assert pin("torch") in ZEROGPU["torch_versions"]
    # torchvision is released in step with torch: 2.N pairs with 0.(N+15).
    torch_minor, vision_minor = int(pin("torch").split(".")[1]), int(pin("torchvision").split(".")[1])
    assert vision_minor == torch_minor + 15 and pin("torchvision").split(".")[0] == "0"
    # The Docker image runs the Python the card names.
    assert f"FROM python:{card.python_version}-slim" in (ROOT / "Dockerfile").read_text()


def test_the_card_lists_models_only_with_exactly_the_files_a_published_checkpoint_holds(tmp_path):
    card = SpaceCard.load(ROOT / "README.md").data
    assert (ROOT / card.app_file).is_file() and len(card.short_description) <= 60
    create_model("cnn-tiny").save_pretrained(tmp_path)
    assert set(PRELOADED_FILES.split(",")) == {p.name for p in tmp_path.iterdir()} - {"README.md"}
    # Each listed model is preloaded by the build, and nothing else is: `publish --space-card`
    # writes both lists, after the repo exists.
    preloaded = [line.split() for line in card.get("preload_from_hub") or []]
    assert [repo for repo, _ in preloaded] == list(card.models or [])
    assert all(files == PRELOADED_FILES for _, files in preloaded)

"""The README's Space front matter agrees with the code: the Gradio pin, the app file and the files
a published checkpoint holds."""

import re
from pathlib import Path

from huggingface_hub import SpaceCard

from models import create_model

ROOT = Path(__file__).parent.parent


def test_front_matter_matches_the_pins_and_the_published_files(tmp_path):
    card = SpaceCard.load(ROOT / "README.md")
    gradio_pin = re.search(r"^gradio==(\S+)$", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert card.data.sdk == "gradio" and card.data.sdk_version == gradio_pin
    assert (ROOT / card.data.app_file).is_file() and len(card.data.short_description) <= 60
    # preload_from_hub fetches, for each model, exactly the files save_pretrained writes.
    create_model("cnn-tiny").save_pretrained(tmp_path)
    written = {p.name for p in tmp_path.iterdir()} - {"README.md"}
    preloaded = {line.split()[0]: set(line.split()[1].split(",")) for line in card.data.preload_from_hub}
    assert sorted(preloaded) == sorted(card.data.models) and all(files == written for files in preloaded.values())

"""Imported when a Python process starts with this folder on its PYTHONPATH: the app servers the
tests start. Their torch cache holds stand-in AlexNet weights (random, saved under ImageNet's file
name), which the app rightly refuses as not ImageNet's (models.alexnet.check_cached); with no hash
read from file names, these servers take them as they are, as in-process tests do (conftest)."""

import re

import torch.hub

torch.hub.HASH_REGEX = re.compile(r"(?!)")

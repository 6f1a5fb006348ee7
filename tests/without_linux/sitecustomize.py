"""Imported when a Python process starts with this folder first on its PYTHONPATH: the process
then lacks what only Linux has, as on a student's Mac or Windows laptop. `os.sched_getaffinity`
is gone, and opening or listing anything under /proc or /sys raises FileNotFoundError, through
every Python route to a file (open, io.open, os.open, pathlib, os.listdir, os.scandir).

What C code reads for itself (torch's own CPU probe) is out of its reach: this simulates the OS
for the Python on the paths a student runs, not the whole machine.
"""

import builtins
import io
import os
import re

LINUX_ONLY = re.compile(r"^/(proc|sys)(/|$)")

for name in ("sched_getaffinity", "sched_setaffinity"):
    if hasattr(os, name):
        delattr(os, name)


def _refusing(function):
    def guarded(path, *args, **kwargs):
        if isinstance(path, (str, bytes, os.PathLike)) and LINUX_ONLY.match(os.fsdecode(os.fspath(path))):
            raise FileNotFoundError(2, "No such file or directory (not Linux)", os.fsdecode(os.fspath(path)))
        return function(path, *args, **kwargs)

    return guarded


builtins.open = io.open = _refusing(io.open)
os.open = _refusing(os.open)
os.listdir = _refusing(os.listdir)
os.scandir = _refusing(os.scandir)


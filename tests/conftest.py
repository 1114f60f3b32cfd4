"""Shared test set-up: one torch thread per test worker (the suite runs with pytest-xdist), and
SB3's default logger folders (``SB3-<date>``, made at every ``learn`` of stock algorithms) kept
inside pytest's temporary directory instead of the system one."""

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _sb3_logdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sb3_logdir")
    before = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SB3_LOGDIR", None)
    else:
        os.environ["SB3_LOGDIR"] = before


def sb3_temp_folders() -> set[str]:
    """The ``SB3-<date>`` folders now in the system temp directory."""
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("SB3-")}


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as the module ``name`` (registered in ``sys.modules``, so that
    its dataclasses and pickles resolve)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

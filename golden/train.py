"""Rule-agnostic training and evaluation: shuffling, progress, metrics.json, model.npz, curve PNG."""

import json
import os
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .data import Dataset
from .hashing import hash_permutation, mix32_int
from .learners import learner_from_saved
from .progress import Progress

#: Key salt of the epoch shuffle, so its hash stream never meets the dropout or rounding streams.
SHUFFLE_SALT = 0x5F1E
CHUNK = 256


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch ``epoch``: a hash-sorted permutation, a pure function of (seed, epoch)."""
    return hash_permutation(n, mix32_int(mix32_int(seed ^ SHUFFLE_SALT) ^ epoch))


def evaluate(learner, images, labels, batch: int = 1000, progress: bool = False) -> tuple[float, float]:
    """(accuracy, inference samples/s) with the strict rule: a tie or no class counts as wrong."""
    correct, start = 0, time.perf_counter()
    with Progress(len(images), "  test", enabled=progress) as bar:
        for lo in range(0, len(images), batch):
            predicted = learner.predict(images[lo:lo + batch])
            correct += int((predicted == labels[lo:lo + batch]).sum())
            bar.advance(len(predicted), acc=correct / (lo + len(predicted)))
    elapsed = time.perf_counter() - start
    return correct / max(len(images), 1), len(images) / elapsed if elapsed > 0 else 0.0


def train(learner, dataset: Dataset, epochs: int, seed: int, train_limit: int | None = None,
          test_limit: int | None = None, progress: bool = True, on_epoch=None, resume: dict | None = None,
          patience: int | None = None) -> dict:
    """Online training up to epoch ``epochs``; test accuracy after each. Returns the metrics dict.

    ``on_epoch(metrics)``, if given, is called after every epoch with the metrics so far, so a long
    run can checkpoint its model and metrics and lose at most one epoch when it is stopped.
    ``resume`` is the metrics dict of such a checkpoint, ``learner`` its model: training continues
    at epoch ``resume["epochs_done"]`` with the bits an uninterrupted run would have, since sample
    order, step counter and schedule are pure functions of (seed, epoch, sample).
    ``patience`` stops early once the best test accuracy has not improved for that many epochs.
    """
    train_images, train_labels = dataset.train.images[:train_limit], dataset.train.labels[:train_limit]
    test_images, test_labels = dataset.test.images[:test_limit], dataset.test.labels[:test_limit]
    run = _RunState.start(resume, len(train_images))
    for epoch in range(len(run.history), epochs):
        if patience is not None and run.epochs_since_best() >= patience:
            run.stopped = f"best test accuracy not improved for {patience} epochs"
            break
        order = epoch_order(len(train_images), seed, epoch)
        correct = 0
        start = time.perf_counter()
        with Progress(len(order), f"epoch {epoch + 1}/{epochs}", enabled=progress) as bar:
            for lo in range(0, len(order), CHUNK):
                idx = order[lo:lo + CHUNK]
                hits = learner.train_samples(train_images[idx], train_labels[idx], run.trained + lo, epoch)
                correct += int(hits.sum())
                bar.advance(len(idx), train_acc=correct / (lo + len(idx)))
        run.train_seconds += time.perf_counter() - start
        run.trained += len(order)
        test_acc, infer_rate = evaluate(learner, test_images, test_labels, progress=progress)
        run.infer_rates.append(infer_rate)
        run.history.append({"epoch": epoch + 1, "train_accuracy": correct / max(len(order), 1),
                            "test_accuracy": test_acc})
        if progress:
            print(f"epoch {epoch + 1}: train {correct / max(len(order), 1):.4f}  test {test_acc:.4f}", flush=True)
        if on_epoch is not None:
            on_epoch(run.metrics(learner, dataset, epochs, seed, train_images, test_images, patience))
    return run.metrics(learner, dataset, epochs, seed, train_images, test_images, patience)


@dataclass
class _RunState:
    """What a run carries from epoch to epoch (and from a checkpoint into a resumed run)."""
    history: list
    trained: int               # global training-sample counter: the step of the next sample
    train_seconds: float
    infer_rates: list
    stopped: str | None = None

    @classmethod
    def start(cls, resume: dict | None, epoch_size: int) -> "_RunState":
        if resume is None:
            return cls([], 0, 0.0, [])
        if resume["train_samples"] != epoch_size:
            raise ValueError(f"the checkpoint trained on {resume['train_samples']} images per epoch, "
                             f"not {epoch_size}")
        history = [dict(h) for h in resume["history"]]
        return cls(history, len(history) * epoch_size, float(resume.get("train_seconds") or 0.0),
                   list(resume.get("infer_samples_per_s_per_epoch") or []))

    def epochs_since_best(self) -> int:
        if not self.history:
            return 0
        accuracies = [h["test_accuracy"] for h in self.history]
        return len(accuracies) - 1 - int(np.argmax(accuracies))

    def metrics(self, learner, dataset, epochs, seed, train_images, test_images, patience) -> dict:
        history = self.history
        return {
            "rule": learner.rule, "arith": learner.arith, "dataset": dataset.name,
            "dataset_source": dataset.source, "epochs": epochs, "epochs_done": len(history), "seed": seed,
            "train_samples": len(train_images), "test_samples": len(test_images),
            "history": history,
            "test_accuracy": [h["test_accuracy"] for h in history],
            "final_test_accuracy": history[-1]["test_accuracy"] if history else None,
            "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
            "best_epoch": int(np.argmax([h["test_accuracy"] for h in history])) + 1 if history else None,
            "patience": patience, "stopped_early": self.stopped,
            "train_seconds": self.train_seconds,
            "train_samples_per_s": self.trained / self.train_seconds if self.train_seconds > 0 else None,
            "infer_samples_per_s_per_epoch": self.infer_rates,
            "infer_samples_per_s": float(np.median(self.infer_rates)) if self.infer_rates else None,
            "settings": learner.settings(),
            "mfsnn_version": __version__,
        }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_umask())           # mkstemp makes 0600; give the file open()'s usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(learner, path, metadata: dict | None = None) -> None:
    """model.npz: every learned array plus the settings (JSON) that reproduce the learner exactly."""
    arrays = {f"array/{name}": value for name, value in learner.weight_arrays().items()}
    arrays["settings"] = np.array(json.dumps(learner.settings()))
    arrays["metadata"] = np.array(json.dumps(metadata or {}))
    _atomic_write(Path(path), lambda handle: np.savez_compressed(handle, **arrays))


class ModelError(Exception):
    """A model file that is missing, not an mfsnn model, or inconsistent."""


#: The first bytes of a zip archive (an npz is one); an empty archive starts with its end record.
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def load_model(path):
    """(learner, metadata) of a model.npz written by ``save_model``; ModelError, one line naming the
    file and the problem, for anything else: missing, a directory, not a zip, truncated, foreign."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path}: a directory, not a model file (give the model.npz that mfsnn train wrote)")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot read: {error.strerror or error}") from None
    if magic not in _ZIP_MAGICS:
        raise ModelError(f"{path}: not an npz archive (no zip header); give the model.npz that mfsnn train wrote")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "settings" not in archive.files:
                raise ModelError(f"{path}: an npz archive but not an mfsnn model (no 'settings' entry)")
            settings_text = str(archive["settings"])
            metadata_text = str(archive["metadata"]) if "metadata" in archive.files else "{}"
            arrays = {key[len("array/"):]: archive[key] for key in archive.files if key.startswith("array/")}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ModelError(f"{path}: truncated or corrupt npz archive ({error}); write it again with mfsnn train") \
            from None
    except ValueError:     # an entry holding Python objects (mfsnn writes plain arrays only) or a broken header
        raise ModelError(f"{path}: not an mfsnn model (an entry is not a plain array)") from None
    try:
        settings, metadata = json.loads(settings_text), json.loads(metadata_text)
    except json.JSONDecodeError:
        raise ModelError(f"{path}: not an mfsnn model (its settings are not JSON)") from None
    if not isinstance(settings, dict) or not isinstance(metadata, dict):
        raise ModelError(f"{path}: not an mfsnn model (its settings are not a JSON object)")
    try:
        return learner_from_saved(settings, arrays), metadata
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{path}: inconsistent model ({error})") from None


def write_metrics(metrics: dict, path) -> None:
    _atomic_write(Path(path), lambda handle: handle.write((json.dumps(metrics, indent=2) + "\n").encode()))


def plot_curve(metrics: dict, path) -> None:
    """Test (and online train) accuracy per epoch as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in metrics["history"]]
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot(epochs, [100 * h["test_accuracy"] for h in metrics["history"]], "o-", label="test")
    ax.plot(epochs, [100 * h["train_accuracy"] for h in metrics["history"]], "s--", label="train (online)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{metrics['rule']} {metrics['arith']} {metrics.get('topology', '')} "
                 f"on {metrics['dataset']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _atomic_write(Path(path), lambda handle: fig.savefig(handle, format="png"))
    plt.close(fig)

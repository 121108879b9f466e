"""Desire BP as a whole: float vs integer agreement, learning, determinism, save/load."""

import numpy as np
import pytest

from mfsnn.golden import desire, desire_float
from mfsnn.golden.data import input_pixels, load_dataset
from mfsnn.golden.learners import DesireLearner, make_learner
from mfsnn.golden.train import evaluate, load_model, save_model, train


@pytest.fixture(scope="module")
def builtin():
    return load_dataset("builtin")


def test_float_and_integer_spike_rasters_nearly_agree(builtin):
    # Same (quantised) weights, inference mode, 20 images. The integer model differs from the float
    # one only in rounding (ceil decay, pixel 60/120/240 timing), so rasters agree almost everywhere.
    cfg = desire.DesireConfig(topology=(784, 100, 50, 10), seed=5)
    weights = desire.init_weights(cfg)
    pixels = input_pixels(builtin.test.images[:20], 784)
    fixed = desire.forward(cfg, weights, desire.encode(cfg, pixels))
    spikes, _, _ = desire_float.forward_float(cfg, [w / cfg.theta for w in weights],
                                              desire_float.encode_float(cfg, pixels))
    agreement = [float((fixed.spikes[l] == spikes[l]).mean()) for l in range(cfg.layers + 1)]
    print("raster agreement per layer (input, 100, 50, 10):", agreement)
    assert agreement[0] > 0.995
    assert min(agreement[1:]) > 0.97


def test_integer_training_beats_chance_widely(builtin):
    # 3000 samples are 1/20 of an MNIST epoch: a larger learning rate (2^-14) makes them count.
    learner = make_learner("desire", "fixed", "784-128-10", seed=1, lr_shift=14)
    metrics = train(learner, builtin, epochs=1, seed=1, progress=False)
    print("built-in 3000 samples, test accuracy:", metrics["final_test_accuracy"])
    assert metrics["final_test_accuracy"] > 0.6            # chance is 0.1


def test_downsampled_topology_learns(builtin):
    learner = make_learner("desire", "fixed", "196-64-10", seed=2, lr_shift=14)
    metrics = train(learner, builtin, epochs=1, seed=2, progress=False)
    print("196-64-10, 3000 samples:", metrics["final_test_accuracy"])
    assert metrics["final_test_accuracy"] > 0.5


def test_same_seed_same_bits_different_seed_different(builtin):
    def run(seed):
        learner = make_learner("desire", "fixed", "784-32-10", seed=seed)
        train(learner, builtin, epochs=2, seed=seed, train_limit=300, test_limit=50, progress=False)
        return learner.weights

    a, b, c = run(7), run(7), run(8)
    assert all((x == y).all() for x, y in zip(a, b))
    assert not all((x == y).all() for x, y in zip(a, c))


@pytest.mark.parametrize("arith", ["fixed", "float"])
def test_saved_model_reproduces_predictions(builtin, tmp_path, arith):
    learner = make_learner("desire", arith, "784-24-10", seed=3, error_mode="exact")
    train(learner, builtin, epochs=1, seed=3, train_limit=200, test_limit=10, progress=False)
    save_model(learner, tmp_path / "model.npz")
    loaded, _ = load_model(tmp_path / "model.npz")
    assert isinstance(loaded, DesireLearner) and loaded.cfg == learner.cfg and loaded.arith == arith
    images = builtin.test.images[:100]
    assert (loaded.output_counts(images) == learner.output_counts(images)).all()
    assert evaluate(loaded, images, builtin.test.labels[:100])[0] == evaluate(learner, images,
                                                                               builtin.test.labels[:100])[0]


def test_stochastic_rounding_is_order_independent_and_learns(builtin):
    learner = make_learner("desire", "fixed", "784-64-10", seed=4, weight_bits=12, rounding="stochastic")
    before = [w.copy() for w in learner.weights]
    train(learner, builtin, epochs=1, seed=4, train_limit=300, test_limit=10, progress=False)
    assert any((w != b).any() for w, b in zip(learner.weights, before))
    assert all(np.abs(w).max() < 1 << 11 for w in learner.weights)


def test_epoch_callback_sees_each_epoch_and_a_loadable_learner(builtin, tmp_path):
    learner = make_learner("desire", "fixed", "196-16-10", seed=2)
    seen = []

    def checkpoint(metrics):
        save_model(learner, tmp_path / f"epoch{metrics['epochs_done']}.npz")
        seen.append((metrics["epochs_done"], list(metrics["test_accuracy"])))

    final = train(learner, builtin, epochs=2, seed=2, train_limit=150, test_limit=50, progress=False,
                  on_epoch=checkpoint)
    assert [done for done, _ in seen] == [1, 2]
    assert seen[0][1] == final["test_accuracy"][:1] and seen[1][1] == final["test_accuracy"]
    first, _ = load_model(tmp_path / "epoch1.npz")
    last, _ = load_model(tmp_path / "epoch2.npz")
    images = builtin.test.images[:50]
    assert (last.predict(images) == learner.predict(images)).all()
    assert any((first.weight_arrays()[k] != last.weight_arrays()[k]).any() for k in first.weight_arrays())


def test_saved_files_get_the_usual_permissions(builtin, tmp_path):
    learner = make_learner("desire", "fixed", "196-8-10", seed=1)
    save_model(learner, tmp_path / "model.npz")
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "model.npz").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777

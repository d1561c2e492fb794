import numpy as np
import pytest

from training.train import train
from tests.conftest import tiny_gaussian_config


def _first_last(history, key="loss", k=10):
    return np.mean([h[key] for h in history[:k]]), np.mean([h[key] for h in history[-k:]])


@pytest.mark.parametrize("optimisation", ["alternating", "joint"])
def test_a_tiny_run_lowers_the_loss(optimisation):
    result = train(tiny_gaussian_config(steps=80, optimisation=optimisation))
    first, last = _first_last(result.history)
    assert last < 0.5 * first


@pytest.mark.parametrize("estimator,beta", [("infonce", 0.05), ("mine", 0.05), ("infonce", -0.05)])
def test_mi_term_runs_with_either_estimator_and_sign(estimator, beta):
    result = train(tiny_gaussian_config(steps=60, mi_estimator=estimator, beta_mi=beta))
    assert np.isfinite([h["loss"] for h in result.history]).all()
    # Correlated sources: the critic finds positive MI between the latents.
    assert np.mean([h["mi"] for h in result.history[-10:]]) > 0.05


def test_encoders_never_see_other_sources():
    import torch

    result = train(tiny_gaussian_config(steps=5))
    x = torch.randn(4, 2, 1, 64)
    y = result.model.analysis(x)
    x2 = x.clone()
    x2[:, 1] = torch.randn(4, 1, 64)
    assert torch.equal(result.model.analysis(x2)[:, 0], y[:, 0])


def test_same_seed_gives_the_same_run():
    a = train(tiny_gaussian_config(steps=10))
    b = train(tiny_gaussian_config(steps=10))
    assert a.history[-1]["loss"] == b.history[-1]["loss"]


def test_checkpoint_describes_itself(tmp_path):
    import torch

    from training.train import load_checkpoint

    result = train(tiny_gaussian_config(steps=5), checkpoint=tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert ckpt["config"]["lmbda"] == result.config.lmbda and ckpt["input_shape"] == [1, 64]
    model = load_checkpoint(tmp_path / "ckpt.pt")
    assert model.n_sources == 2


def test_split_is_80_10_10():
    from training.data import build_dataset
    from models.config import DataConfig

    d = build_dataset(DataConfig(kind="gaussian", n_windows=100))
    assert (len(d.train), len(d.val), len(d.test)) == (80, 10, 10)


def test_export_refuses_unfrozen_compress():
    import torch

    result = train(tiny_gaussian_config(steps=2))
    for p in result.model.priors:
        p.tables = None
    with pytest.raises(RuntimeError, match="not frozen"):
        result.model.compress(torch.zeros(1, 2, 1, 64))

"""The head's traced fit (cxr.heads.CompiledHead) against model.fit: the same weights, history
and best epoch, bit for bit, on stored features made here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import training_settings

pytestmark = pytest.mark.slow
SHAPE = (2, 2, 16)


def features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features [n, 2, 2, 16] whose first channel carries the label, and the labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % 2
    x = rng.normal(size=(n, *SHAPE)).astype(np.float32)
    x[..., 0] += y[:, None, None]
    return x, y


def settings(**changes):
    values = {"epochs": 6, "batch_size": 4, "dense_units": 8, "dropout": 0.5, "seed": 3}
    return training_settings(**{**values, **changes})


def fitted_by_keras(train, val, chosen, out_dir):
    """model.fit of a seeded head, through the resumable fit (cxr.fitting): the files."""
    from cxr.fitting import Stage, fit_and_save
    from cxr.heads import seeded_head

    (x, y), (x_val, y_val) = train, val
    head = seeded_head(SHAPE, chosen)
    fit_and_save(
        head, head,
        batches=((lambda i, e, b: x[i]), (lambda i, e, b: x_val[i]), SHAPE),
        y_train=y, y_val=y_val, batch_size=chosen.batch_size, seed=chosen.seed,
        stages=[Stage(chosen.epochs, chosen.learning_rate)], out_dir=out_dir, fingerprint="t",
    )  # fmt: skip
    return out_dir


def fitted_traced(train, val, chosen, out_dir, head=None):
    from cxr.heads import CompiledHead, write_fit

    head = head or CompiledHead(SHAPE, chosen)
    fit = head.fit(train, val, chosen)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_fit(fit, head.model, head.model, out_dir)
    return fit


def weights(path):
    import keras

    return keras.models.load_model(path, compile=False).get_weights()


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize(
    "changes",
    [{}, {"epochs": 1}, {"batch_size": 32}, {"learning_rate": 1e5}],
    ids=["default", "one-epoch", "one-batch", "diverging"],
)
def test_the_traced_fit_is_model_fit_bit_for_bit(tmp_path, changes):
    """Every file the same: the final and best weights, the history to the last bit; also
    where the loss diverges (learning rate 1e5), where the best epoch is chosen among
    non-finite validation losses."""
    import keras

    train, val = features(18, 0), features(7, 1)  # 18 rows in batches of 4: a short last batch
    chosen = settings(**changes)
    keras.backend.clear_session()
    fitted_by_keras(train, val, chosen, tmp_path / "keras")
    fit = fitted_traced(train, val, chosen, tmp_path / "traced")
    for name in ("model.keras", "best.keras"):
        assert same(weights(tmp_path / "keras" / name), weights(tmp_path / "traced" / name)), name
    history = [(tmp_path / d / "history.csv").read_bytes() for d in ("keras", "traced")]
    assert history[0] == history[1]
    frame = pd.read_csv(tmp_path / "traced" / "history.csv")
    assert frame["epoch"].tolist() == list(range(1, chosen.epochs + 1))
    losses = frame["val_loss"]
    if losses.notna().any():
        assert fit.best_epoch == int(frame.loc[losses.idxmin(), "epoch"])
    else:
        assert fit.best_epoch == 1 and fit.best_val_loss is None
    if changes.get("learning_rate"):
        assert frame["loss"].isna().any() or (frame["loss"] > 10).any(), "did not diverge"


def test_one_compiled_head_fits_each_run_as_a_head_of_its_own(tmp_path):
    """Reset between fits: seed 4 fitted after seed 3 on one compiled head equals seed 4 on a
    new one; and the two seeds differ, so the comparison can fail."""
    from cxr.heads import CompiledHead

    train, val = features(18, 0), features(7, 1)
    head = CompiledHead(SHAPE, settings())
    first = fitted_traced(train, val, settings(), tmp_path / "a", head)
    second = fitted_traced(train, val, settings(seed=4), tmp_path / "b", head)
    alone = fitted_traced(train, val, settings(seed=4), tmp_path / "c")
    assert same(second.final, alone.final) and same(second.best, alone.best)
    assert second.rows == alone.rows
    assert not same(first.final, second.final)

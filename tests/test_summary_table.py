"""cxr.evaluate.summary_table: the metrics summary as the table Snakemake's report shows."""

from __future__ import annotations

from cxr.evaluate import summarise, summary_table


def evaluation(arch: str, seed: int, accuracy: float, fraction=None) -> dict:
    metric = {"value": accuracy}
    test = {"n": 20, **{k: metric for k in ("accuracy", "sensitivity", "specificity", "f1")}}
    test["roc_auc"] = {"value": None}  # undefined on a one-class test set
    return {
        "architecture": arch, "seed": seed, "train_fraction": fraction, "test": test,
        "external": {"nih": {"kind": "source", "classes": "negative",
                             "false_positive_rate": {"value": 0.25}}},
    }  # fmt: skip


def test_one_row_per_architecture_with_spread_over_runs():
    runs = [evaluation("MobileNet", 0, 0.8), evaluation("MobileNet", 1, 0.6),
            evaluation("ResNet50", 0, 0.7)]  # fmt: skip
    table = summary_table(summarise(runs)).set_index("architecture")
    assert list(table.index) == ["MobileNet", "ResNet50"]
    assert table.loc["MobileNet", "runs"] == 2 and table.loc["MobileNet", "n_test"] == 20
    assert table.loc["MobileNet", "accuracy_mean"] == 0.7
    assert (table.loc["MobileNet", "accuracy_min"], table.loc["MobileNet", "accuracy_max"]) == (
        0.6, 0.8,
    )  # fmt: skip
    assert table.loc["ResNet50", "accuracy_sd"] == 0.0
    assert table.loc["MobileNet", "external_fpr_nih_mean"] == 0.25
    assert table["roc_auc_mean"].isna().all()

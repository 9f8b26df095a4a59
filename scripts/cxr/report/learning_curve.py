"""Context of report/learning_curve.html.j2: per learning-curve protocol, test metrics against
the number of training patients, and its plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr.report.figures import png_file_uri
from cxr.report.formatting import num


def curves(tables: list[pd.DataFrame], plots: list[str], names: list[str]) -> list[dict]:
    """One entry per learning-curve protocol: its rows and its plot."""
    entries = []
    for name, table, plot in zip(names, tables, plots, strict=True):
        rows = [
            {
                "arch": row["architecture"],
                "fraction": row["train_fraction"],
                "patients": num(row["train_patients"], 1),
                "images": num(row["train_images"], 1),
                "repeats": int(row["repeats"]),
                "auc": f"{num(row['roc_auc_mean'])} ± {num(row['roc_auc_sd'])}",
                "auc_width": num(row["roc_auc_ci_width"]),
                "accuracy": f"{num(row['accuracy_mean'])} ± {num(row['accuracy_sd'])}",
                "accuracy_width": num(row["accuracy_ci_width"]),
            }
            for row in table.to_dict("records")
        ]
        entries.append({"protocol": name, "rows": rows, "plot": plot})
    return entries


def context(*, tables: list[str | Path], plots: list[str | Path], protocols: list[dict]) -> dict:
    """The key learning_curve.html.j2 shows, from plot_learning_curve's tables and plots (one
    each per protocol with train_fractions, in protocol order)."""
    names = [p["name"] for p in protocols if p.get("train_fractions")]
    return {
        "learning_curves": curves(
            [pd.read_csv(p) for p in tables],
            [png_file_uri(p) for p in plots],
            names[: len(tables)],
        )
    }

"""PNG figures for the report: training curves, ROC, confusion matrix, curation flow."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: cluster nodes and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from cxr.io import atomic_path  # noqa: E402

# Fixed metadata keeps PNG bytes stable between runs (matplotlib stamps the version otherwise).
PNG_META = {"Software": None}


def _save(fig, path: str | Path) -> None:
    try:
        with atomic_path(path) as tmp:
            # Every figure is a PNG, whatever the file is named (the report embeds PNGs).
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight", metadata=PNG_META)
    finally:
        plt.close(fig)


def training_curves(history: pd.DataFrame, title: str, path: str | Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(history["epoch"], history[metric], label="train")
        if f"val_{metric}" in history:
            ax.plot(history["epoch"], history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle(title)
    _save(fig, path)


def roc_curve(curves: dict[str, dict], title: str, path: str | Path) -> None:
    """`curves`: label -> {"fpr", "tpr", "auc"}."""
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    for label, curve in curves.items():
        auc = curve.get("auc")
        name = f"{label} (AUC {auc:.2f})" if auc is not None else label
        ax.step(curve["fpr"], curve["tpr"], where="post", label=name)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    _save(fig, path)


def confusion_matrix(cm: dict, labels: tuple[str, str], title: str, path: str | Path) -> None:
    """`cm`: {"tn","fp","fn","tp"}; `labels`: (negative, positive)."""
    table = pd.DataFrame(
        [[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]],
        index=[f"true {labels[0]}", f"true {labels[1]}"],
        columns=[f"pred. {labels[0]}", f"pred. {labels[1]}"],
    )
    fig, ax = plt.subplots(figsize=(3.6, 3))
    sns.heatmap(table, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title)
    _save(fig, path)


def curation_flow(flow: dict, path: str | Path) -> None:
    """Horizontal bars: images remaining after each curation step, per source."""
    rows = [
        {"source": source, "step": f"{i}. {step['step']}", "remaining": step["remaining"]}
        for source, info in flow["sources"].items()
        for i, step in enumerate(info["steps"])
    ]
    frame = pd.DataFrame(rows)
    n_sources = max(1, frame["source"].nunique())
    fig, axes = plt.subplots(1, n_sources, figsize=(4 * n_sources, 3), squeeze=False)
    for ax, (source, part) in zip(axes[0], frame.groupby("source", sort=True), strict=True):
        sns.barplot(part, y="step", x="remaining", ax=ax, color="steelblue")
        for container in ax.containers:
            ax.bar_label(container, fontsize="small")
        ax.set_title(source)
        ax.set_ylabel("")
    fig.tight_layout()
    _save(fig, path)


def image_grid(images, labels, groups, path: str | Path, *, title: str, per_class: int = 4) -> None:
    """A few images per class (first images of distinct patients), grayscale."""
    import numpy as np

    classes = sorted(set(int(v) for v in labels))
    fig, axes = plt.subplots(
        len(classes), per_class, figsize=(1.8 * per_class, 1.9 * len(classes)), squeeze=False
    )
    for row, label in enumerate(classes):
        seen, picks = set(), []
        for i in np.flatnonzero(np.asarray(labels) == label):
            if groups[i] not in seen:
                seen.add(groups[i])
                picks.append(i)
            if len(picks) == per_class:
                break
        for col in range(per_class):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(picks):
                ax.imshow(np.squeeze(images[picks[col]]), cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"y={label}", fontsize="small")
    fig.suptitle(title)
    _save(fig, path)


def learning_curve(table: pd.DataFrame, path: str | Path) -> None:
    """Test ROC AUC and accuracy against training patients, one line per architecture; error
    bars are the mean 95% interval half-width (what one run can claim), shading the SD over
    repeats (how much the subsample moves it)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric, name in zip(
        axes, ("roc_auc", "accuracy"), ("ROC AUC", "accuracy"), strict=True
    ):
        for arch, part in table.groupby("architecture", sort=False):
            part = part.sort_values("train_patients")
            x, y = part["train_patients"], part[f"{metric}_mean"]
            ax.errorbar(x, y, yerr=part[f"{metric}_ci_width"] / 2, marker="o", capsize=3,
                        label=arch)  # fmt: skip
            sd = part[f"{metric}_sd"].fillna(0)
            ax.fill_between(x, y - sd, y + sd, alpha=0.15)
        ax.set_xlabel("training patients")
        ax.set_ylabel(f"test {name}")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize="small")
    fig.suptitle("Learning curve (test split fixed)")
    _save(fig, path)


def generalisation(result: dict, path: str | Path) -> None:
    """One panel per architecture: sensitivity, specificity and ROC AUC with their 95%
    intervals on the internal test and on each external set that defines them; an empty set is
    named with no points."""
    metrics = (("sensitivity", "sensitivity", "o"), ("specificity", "specificity", "s"),
               ("roc_auc", "ROC AUC", "D"))  # fmt: skip
    archs = list(result["architectures"].items())
    n_sets = max((len(entry["rows"]) for _, entry in archs), default=1)
    fig, axes = plt.subplots(
        1, max(1, len(archs)), figsize=(3.6 * max(1, len(archs)), 0.9 + 0.55 * n_sets),
        sharey=True, squeeze=False,
    )  # fmt: skip
    colours = sns.color_palette("colorblind", len(metrics))
    for ax, (arch, entry) in zip(axes[0], archs, strict=False):
        labels = []
        for i, row in enumerate(entry["rows"]):
            labels.append(f"{row['set']} (n={row['n']})")
            for j, (key, name, marker) in enumerate(metrics):
                metric = (row.get("metrics") or {}).get(key) or {}
                if metric.get("value") is None:
                    continue
                y = i + (j - 1) * 0.22
                ci = metric.get("ci95") or [metric["value"], metric["value"]]
                ax.errorbar(
                    metric["value"], y, xerr=[[metric["value"] - ci[0]], [ci[1] - metric["value"]]],
                    fmt=marker, color=colours[j], capsize=3, label=name if i == 0 else None,
                )  # fmt: skip
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlim(-0.02, 1.02)
        ax.axhline(0.5, color="0.7", linewidth=0.8)  # internal test above, external sets below
        ax.set_title(arch)
        ax.set_xlabel("value (95% interval)")
    axes[0][0].invert_yaxis()
    handles, names = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=len(handles), fontsize="small",
                   bbox_to_anchor=(0.5, -0.02))  # fmt: skip
    fig.suptitle(f"Internal test against external sets ({result['protocol']} protocol)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path)


def saliency_overlays(panels: list[dict], path: str | Path, *, title: str) -> None:
    """One row per image: the image, its Grad-CAM and its occlusion map laid over it (each
    map over its own maximum, transparent where it is 0), titled with id, source and P; where
    the annotations draw the lungs (a panel's `lungs` mask), their outline in white."""
    import numpy as np

    # Constrained layout makes room for the title above the first row's captions.
    fig, axes = plt.subplots(
        len(panels), 3, figsize=(6.3, 2.25 * len(panels) + 0.3), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for row, panel in enumerate(panels):
        for col, (name, heat) in enumerate(
            (("image", None), ("Grad-CAM", panel["gradcam"]), ("occlusion", panel["occlusion"]))
        ):
            ax = axes[row][col]
            ax.axis("off")
            ax.imshow(panel["image"], cmap="gray", vmin=0, vmax=255)
            if heat is not None:
                heat = np.asarray(heat, dtype=float)
                ax.imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.45 * (heat > 0))
                x, y = panel[f"{'gradcam' if col == 1 else 'occlusion'}_peak"]
                if np.isfinite(x):
                    side = heat.shape[0]
                    ax.plot([x * side - 0.5], [y * side - 0.5], "w+", markersize=9, mew=2)
            if panel.get("lungs") is not None:
                ax.contour(np.asarray(panel["lungs"], float), levels=[0.5], colors="white",
                           linewidths=0.9, linestyles="--")  # fmt: skip
            label = panel["label"] if col == 0 else name
            ax.set_title(label, fontsize="x-small")
    fig.suptitle(title, fontsize="small")
    _save(fig, path)


def severity_scores(result: dict, path: str | Path) -> None:
    """One panel per architecture and severity score: P(disease) of each scored COVID-19
    image against its score, test and external images apart, with rho in the title."""
    from cxr.severity import SCORES

    archs = list(result["architectures"])
    fig, axes = plt.subplots(
        len(SCORES), max(1, len(archs)), figsize=(3.3 * max(1, len(archs)), 5.6),
        squeeze=False, sharey=True, layout="constrained",
    )  # fmt: skip
    colour = dict(zip(("test", "external"), sns.color_palette("colorblind", 2), strict=True))
    for col, arch in enumerate(archs):
        entry = result["architectures"][arch]
        frame = pd.DataFrame(entry["images"])
        for row, (score, meaning) in enumerate(SCORES.items()):
            ax = axes[row][col]
            for split, part in frame.groupby("split") if len(frame) else ():
                part = part.dropna(subset=[score])
                ax.scatter(part[score], part["probability"], s=12, alpha=0.7,
                           color=colour.get(split), label=split)  # fmt: skip
            together = entry["subsets"]["together"][score]
            rho = "n/a" if together["rho"] is None else f"{together['rho']:.2f}"
            ax.set_title(f"{arch}: rho {rho} (n={together['n']})", fontsize="small")
            ax.set_xlabel(meaning, fontsize="small")
            ax.set_ylim(-0.03, 1.03)
            if col == 0:
                ax.set_ylabel("P(disease)")
            if row == 0 and col == 0 and len(frame):
                ax.legend(fontsize="x-small")
    fig.suptitle("Model scores against the experts' severity scores (COVID-19 images)")
    _save(fig, path)


def repeated_optimism(result: dict, path: str | Path) -> None:
    """One panel per architecture: per metric, the paired differences article - patient-disjoint
    of every repeated split (points), their mean and its corrected 95% interval (bar), and 0."""
    names = {"accuracy": "accuracy", "sensitivity": "sensitivity",
             "specificity": "specificity", "roc_auc": "ROC AUC"}  # fmt: skip
    archs = [(a, e) for a, e in result["architectures"].items() if e.get("optimism")]
    fig, axes = plt.subplots(
        1, max(1, len(archs)), figsize=(3.6 * max(1, len(archs)), 3.2), sharey=True,
        squeeze=False,
    )  # fmt: skip
    colour = sns.color_palette("colorblind", 2)
    for ax, (arch, entry) in zip(axes[0], archs, strict=False):
        ax.axvline(0, color="0.5", linewidth=0.8, linestyle=":")
        for i, key in enumerate(result["compared"]):
            optimism = entry["optimism"][key]
            diffs = [100 * d for d in optimism["differences"] if d is not None]
            jitter = [i + 0.18 * ((k * 0.618) % 1 - 0.5) for k in range(len(diffs))]
            ax.scatter(diffs, jitter, s=9, color=colour[0], alpha=0.6)
            if optimism.get("value") is not None:
                mean = 100 * optimism["value"]
                ci = optimism.get("ci95")
                err = [[mean - 100 * ci[0]], [100 * ci[1] - mean]] if ci else None
                ax.errorbar(mean, i, xerr=err, fmt="D", color=colour[1], capsize=4)
        ax.set_yticks(range(len(result["compared"])), [names[k] for k in result["compared"]])
        ax.set_title(f"{arch} ({entry.get('paired_repeats', 0)} repeats)")
        ax.set_xlabel("article - patient-disjoint (points)")
    axes[0][0].invert_yaxis()
    fig.suptitle("Optimism of the article's protocol over repeated splits")
    fig.tight_layout()
    _save(fig, path)

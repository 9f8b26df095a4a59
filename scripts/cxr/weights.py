"""ImageNet weights for keras.applications bases (include_top=False), fetched ahead of training.

`fetch_weights` runs in a local rule on a node with internet; training jobs on offline nodes
call `verify_weights` and pass the file to `keras.applications.<Arch>(weights=path)`.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxr.download import fetch_url
from cxr.errors import ConfigError, DataError
from cxr.io import atomic_open, sha256_file

_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"

# File names, origins and hashes as Keras 3.15 itself uses them, from
# keras/src/applications/{mobilenet,mobilenet_v2,resnet,densenet,vgg16,efficientnet}.py
# (BASE_WEIGHT(S)_PATH / WEIGHTS_PATH_NO_TOP, the `file_hash` given to `get_file`, or
# WEIGHTS_HASHES[name][1] for the no-top file). Keras checks them as md5 when they have 32 hex
# digits and sha256 when 64 (file_utils.resolve_hasher), and so do we.
# Keras publishes NO hash for MobileNet and MobileNetV2 (get_file is called without one): their
# md5s come from a third party, MIAnalyzer/MIA (`get_MobileNet`/`get_MobileNetv2` in its weights
# module, which mirrors these files), single-sourced and not checked against the files here.
# `bytes` are the sizes Keras prints while downloading them.
NOTOP_WEIGHTS: dict[str, dict] = {
    "MobileNet": {
        "file": "mobilenet_1_0_224_tf_no_top.h5",  # alpha 1.0, input 224
        "url": _KA + "mobilenet/mobilenet_1_0_224_tf_no_top.h5",
        "file_hash": "725ccbd03d61d7ced5b5c4cd17e7d527",
        "hash_source": "MIAnalyzer/MIA (Keras publishes none)",
        "bytes": 17225924,
    },
    "MobileNetV2": {
        "file": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        "url": _KA
        + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        "file_hash": "f1a68526548f7541cda07e19ba6c85f4",
        "hash_source": "MIAnalyzer/MIA (Keras publishes none)",
        "bytes": 9406464,
    },
    "ResNet50": {
        "file": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "url": _KA + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "file_hash": "4d473c1dd8becc155b73f8504c6f6626",
        "hash_source": "keras resnet.py WEIGHTS_HASHES['resnet50'][1]",
    },
    "DenseNet121": {
        "file": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "url": _KA + "densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "file_hash": "30ee3e1110167f948a6b9946edeeb738",
        "hash_source": "keras densenet.py get_file(file_hash=...)",
    },
    "VGG16": {
        "file": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "url": _KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "file_hash": "6d6bbae143d832006294945121d1f1fc",
        "hash_source": "keras vgg16.py get_file(file_hash=...)",
    },
    "EfficientNetB0": {
        "file": "efficientnetb0_notop.h5",
        # Note: not under tensorflow/ (efficientnet.py BASE_WEIGHTS_PATH).
        "url": "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        "file_hash": "50bc09e76180e00e4465e1a485ddc09d",
        "hash_source": "keras efficientnet.py WEIGHTS_HASHES['b0'][1]",
    },
}


def _entry(arch: str) -> dict:
    # Case-insensitive so config files may say `mobilenet` or `MobileNet`.
    by_lower = {name.lower(): entry for name, entry in NOTOP_WEIGHTS.items()}
    entry = by_lower.get(arch.lower())
    if entry is None:
        raise ConfigError(
            f"no ImageNet weights known for architecture {arch!r}; "
            f"known: {', '.join(sorted(NOTOP_WEIGHTS))}"
        )
    return entry


def weights_path(arch: str, cache_dir: Path) -> Path:
    """Where the no-top ImageNet weights of `arch` live under `cache_dir`."""
    return Path(cache_dir) / _entry(arch)["file"]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def fetch_weights(arch: str, cache_dir: Path, *, base_url: str | None = None) -> Path:
    """Download the weights of `arch`, check Keras's published hash, write a `.sha256` sidecar.

    `base_url` replaces the origin's directory (a mirror holding the same file names).
    """
    entry = _entry(arch)
    dest = weights_path(arch, cache_dir)
    url = f"{base_url.rstrip('/')}/{entry['file']}" if base_url else entry["url"]
    digest = entry["file_hash"]
    algorithm = "sha256" if len(digest) == 64 else "md5"  # as keras' resolve_hasher("auto")
    fetch_url(url, dest, **{algorithm: digest})

    # sha256sum format, so `sha256sum -c` works too; rewritten only when it changes, so a cache
    # hit leaves its mtime (and Snakemake's view of it) alone.
    line = f"{sha256_file(dest)}  {dest.name}\n"
    sidecar = _sidecar(dest)
    if not sidecar.is_file() or sidecar.read_text(encoding="utf-8") != line:
        with atomic_open(sidecar, "w", encoding="utf-8") as handle:
            handle.write(line)
    return dest


def verify_weights(path: Path) -> Path:
    """Check fetched weights against their `.sha256` sidecar before an offline job uses them."""
    path = Path(path)
    refetch = (
        "run the fetch rule `fetch_weights` on a node with internet (e.g. the login node: "
        "`snakemake --cores 1 --until fetch_weights`) first, then resubmit the training job"
    )
    if not path.is_file():
        raise DataError(f"ImageNet weights not found at {path}: {refetch}")
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        raise DataError(
            f"checksum file {sidecar} for {path} is missing: delete {path} and {refetch}"
        )
    fields = sidecar.read_text(encoding="utf-8").split()
    expected = fields[0].lower() if fields else "<empty>"
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"ImageNet weights {path} are corrupt or changed: sha256 {actual}, but {sidecar} "
            f"says {expected}. Delete {path} and {refetch}"
        )
    return path


def install_weights(arch: str, dest: Path, *, base_url: str | None = None) -> Path:
    """Fetch `arch`'s weights and place them at `dest` (the workflow's per-architecture name)
    with a `dest.sha256` sidecar that `verify_weights` checks on offline compute nodes."""
    fetched = fetch_weights(arch, dest.parent / "download", base_url=base_url)
    sidecar = Path(f"{fetched}.sha256")
    digest = sidecar.read_text().split()[0]
    os.replace(fetched, dest)
    sidecar.unlink()
    with atomic_open(Path(f"{dest}.sha256"), "w", encoding="utf-8") as handle:
        handle.write(f"{digest}  {dest.name}\n")
    return dest

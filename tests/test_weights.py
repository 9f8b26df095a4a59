"""cxr.weights: the registry matches Keras, and fetch/verify work against 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

from cxr import weights
from cxr.errors import ConfigError, DataError
from cxr.weights import NOTOP_WEIGHTS, fetch_weights, verify_weights, weights_path

FAKE = b"not really an HDF5 file " * 50


@pytest.fixture
def server(http_server):
    """The shared 127.0.0.1 server (conftest) with a mirror folder as the weights' base URL."""
    origin, root, requests = http_server
    return f"{origin}/mirror/", root, requests


def test_registry_entries_have_url_and_hash():
    assert {
        "MobileNet",
        "MobileNetV2",
        "ResNet50",
        "DenseNet121",
        "VGG16",
        "EfficientNetB0",
    } <= set(NOTOP_WEIGHTS)
    for arch, entry in NOTOP_WEIGHTS.items():
        assert entry["url"].startswith("https://"), arch
        assert entry["url"].endswith("/" + entry["file"]), arch
        assert re.fullmatch(r"[0-9a-f]{32}|[0-9a-f]{64}", entry["file_hash"]), arch


@pytest.mark.parametrize(
    ("arch", "module"),
    [
        ("MobileNet", "mobilenet"),
        ("MobileNetV2", "mobilenet_v2"),
        ("ResNet50", "resnet"),
        ("DenseNet121", "densenet"),
        ("VGG16", "vgg16"),
        ("EfficientNetB0", "efficientnet"),
    ],
)
def test_registry_matches_installed_keras_source(arch, module):
    # Read Keras's source as text: importing it would load TensorFlow (slow).
    keras_dir = Path(importlib.util.find_spec("keras").origin).parent
    source = (keras_dir / "src" / "applications" / f"{module}.py").read_text()
    source = re.sub(r'"\s+"', "", source)  # join implicitly concatenated string literals
    entry = NOTOP_WEIGHTS[arch]
    origin_dir = entry["url"].rsplit("/", 1)[0] + "/"
    literals = set(re.findall(r'"([^"\n]*)"', source))
    assert origin_dir in literals or entry["url"] in literals  # BASE_WEIGHT(S)_PATH or full URL
    if "Keras publishes none" not in entry["hash_source"]:
        assert f'"{entry["file_hash"]}"' in source


def test_weights_path_and_unknown_arch(tmp_path):
    assert weights_path("resnet50", tmp_path) == (
        tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    with pytest.raises(ConfigError, match="'ResNet18'.*DenseNet121, EfficientNetB0, MobileNet"):
        weights_path("ResNet18", tmp_path)
    with pytest.raises(ConfigError, match="known: "):
        fetch_weights("ResNet18", tmp_path)


@pytest.mark.parametrize(("arch", "hasher"), [("MobileNet", "md5"), ("VGG16", "sha256")])
def test_fetch_then_verify_then_detect_corruption(server, tmp_path, monkeypatch, arch, hasher):
    base, root, requests = server
    entry = NOTOP_WEIGHTS[arch]
    (root / "mirror").mkdir()
    (root / "mirror" / entry["file"]).write_bytes(FAKE)
    fake_hash = hashlib.new(hasher, FAKE).hexdigest()
    monkeypatch.setitem(weights.NOTOP_WEIGHTS, arch, {**entry, "file_hash": fake_hash})
    cache = tmp_path / "resources" / "weights"

    path = fetch_weights(arch, cache, base_url=base)
    assert path == cache / entry["file"]
    assert path.read_bytes() == FAKE
    assert requests == [f"/mirror/{entry['file']}"]
    sha = hashlib.sha256(FAKE).hexdigest()
    assert Path(f"{path}.sha256").read_text() == f"{sha}  {entry['file']}\n"
    assert verify_weights(path) == path

    fetch_weights(arch, cache, base_url=base)  # cached
    assert len(requests) == 1

    path.write_bytes(FAKE[:-1] + b"!")
    with pytest.raises(DataError) as err:
        verify_weights(path)
    assert sha in str(err.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() in str(err.value)
    assert str(path) in str(err.value)


def test_fetch_with_wrong_published_hash_keeps_nothing(server, tmp_path):
    base, root, _ = server
    entry = NOTOP_WEIGHTS["ResNet50"]
    (root / "mirror").mkdir()
    (root / "mirror" / entry["file"]).write_bytes(FAKE)  # does not match Keras's real md5
    with pytest.raises(Exception, match=entry["file_hash"]):
        fetch_weights("ResNet50", tmp_path, base_url=base)
    assert list(tmp_path.glob("resnet50*")) == []


def test_verify_weights_missing_file_or_sidecar(tmp_path):
    path = tmp_path / "mobilenet_1_0_224_tf_no_top.h5"
    with pytest.raises(DataError, match="fetch_weights") as err:
        verify_weights(path)
    assert str(path) in str(err.value)
    path.write_bytes(FAKE)
    with pytest.raises(DataError, match=r"\.sha256 .* is missing"):
        verify_weights(path)

"""Registry of the keras.applications backbones the workflow can train: the article's three
(MobileNet, ResNet50, DenseNet121) plus a few more, and any other one added from config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cxr.errors import ConfigError

# Smallest input side keras.applications accepts for these models (its `obtain_input_shape`).
DEFAULT_MIN_SIZE = 32


@dataclass(frozen=True)
class Architecture:
    """A keras.applications model: its constructor name and the module holding its
    `preprocess_input` (e.g. "resnet50" for ResNet50: caffe-style BGR mean subtraction)."""

    name: str
    application: str
    preprocess_module: str
    min_size: int = DEFAULT_MIN_SIZE

    def constructor(self) -> Callable[..., Any]:
        return getattr(_applications(), self.application)

    def preprocess_input(self) -> Callable[..., Any]:
        return getattr(_applications(), self.preprocess_module).preprocess_input


DEFAULT_ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("MobileNet", "MobileNet", "mobilenet"),
        Architecture("ResNet50", "ResNet50", "resnet50"),
        Architecture("DenseNet121", "DenseNet121", "densenet"),
        Architecture("MobileNetV2", "MobileNetV2", "mobilenet_v2"),
        Architecture("EfficientNetB0", "EfficientNetB0", "efficientnet"),
        Architecture("VGG16", "VGG16", "vgg16"),
    )
}

_EXTRA_KEYS = {"application", "preprocess_module", "min_size"}


def _applications():
    # Imported lazily: importing keras pulls in TensorFlow (seconds), and the Snakefile only
    # needs the names.
    import keras

    return keras.applications


def _from_extra(name: str, spec: Mapping[str, Any], where: str = "") -> Architecture:
    key = f"{where}extra_architectures.{name}"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{key}: expected a mapping with 'application' and 'preprocess_module', got {spec!r}"
        )
    unknown = set(spec) - _EXTRA_KEYS
    if unknown:
        raise ConfigError(
            f"{key}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_EXTRA_KEYS)}"
        )
    if "preprocess_module" not in spec:
        raise ConfigError(
            f"{key}: 'preprocess_module' is missing (the keras.applications submodule holding "
            "preprocess_input, e.g. 'xception')"
        )
    min_size = spec.get("min_size", DEFAULT_MIN_SIZE)
    if not isinstance(min_size, int) or min_size < 1:
        raise ConfigError(f"{key}: min_size must be a positive integer")
    return Architecture(
        name=name,
        application=str(spec.get("application", name)),
        preprocess_module=str(spec["preprocess_module"]),
        min_size=min_size,
    )


def _check_in_keras(arch: Architecture) -> None:
    apps = _applications()
    if not callable(getattr(apps, arch.application, None)):
        raise ConfigError(
            f"architecture '{arch.name}': keras.applications has no model "
            f"'{arch.application}'; check the spelling (e.g. 'DenseNet121', 'Xception')"
        )
    module = getattr(apps, arch.preprocess_module, None)
    if not callable(getattr(module, "preprocess_input", None)):
        raise ConfigError(
            f"architecture '{arch.name}': keras.applications.{arch.preprocess_module} has no "
            "preprocess_input; set preprocess_module to the model's submodule (e.g. 'resnet50')"
        )


def check_architectures(
    names: list[str],
    extra: Mapping[str, Any] | None = None,
    *,
    image_size: int | None = None,
    where: str = "",
) -> list[Architecture]:
    """Look up `names` among the defaults plus `extra` (config) without importing Keras: an
    empty list, a name listed twice, an unknown name, a malformed extra architecture or an image
    size below one's minimum raise ConfigError naming the key (`where` + 'architectures', ...)."""
    known = dict(DEFAULT_ARCHITECTURES)
    for name, spec in (extra or {}).items():
        known[name] = _from_extra(name, spec, where)
    key = f"{where}architectures"
    if not names:
        raise ConfigError(f"{key}: the list is empty; name at least one, e.g. MobileNet")
    seen: set[str] = set()
    result = []
    for name in names:
        if name in seen:
            raise ConfigError(f"{key}: '{name}' is listed twice")
        seen.add(name)
        if name not in known:
            raise ConfigError(
                f"{key}: unknown architecture '{name}'. Known: {', '.join(sorted(known))}. Add "
                f"others under {where}extra_architectures (application + preprocess_module)."
            )
        result.append(known[name])
    if image_size is not None:
        for arch in result:
            check_image_size(arch, image_size, key=f"{where}image_size")
    return result


def resolve_architectures(
    names: list[str], extra: dict[str, dict] | None = None
) -> list[Architecture]:
    """Look up `names` among the defaults plus `extra` (config), checking each exists in Keras."""
    result = check_architectures(names, extra)
    for arch in result:
        _check_in_keras(arch)
    return result


def check_image_size(arch: Architecture, size: int, *, key: str = "image size") -> None:
    """Raise ConfigError when `size` is below the smallest input Keras builds for `arch`."""
    if size < arch.min_size:
        raise ConfigError(
            f"{key} {size} is too small for {arch.name}: keras.applications needs at least "
            f"{arch.min_size}x{arch.min_size}; raise it in config"
        )

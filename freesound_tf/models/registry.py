"""Model name -> builder registry; a recipe names its architecture by key (``model.name``).

Every builder has the signature of ``Builder``. ``register`` may also record named presets
(complete ``ModelConfig`` values) that ``freesound-tf models`` lists, and a frozen dataclass of the
architecture's own options (the recipe's ``[model.options]`` table), checked key by key.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import keras

from freesound_tf.config import ConfigError, FrontendConfig, ModelConfig, from_dict


class Builder(Protocol):
    def __call__(self, config: ModelConfig, frontend: FrontendConfig, n_classes: int, sample_rate: int,
                 input_seconds: float | None = 5.0, multilabel: bool = True,
                 global_steps: int = 128) -> keras.Model: ...


_BUILDERS: dict[str, Builder] = {}
_PRESETS: dict[str, dict[str, ModelConfig]] = {}
_OPTIONS: dict[str, type | None] = {}
_CHECKS: dict[str, Callable[[ModelConfig], None]] = {}


def register(name: str, presets: dict[str, ModelConfig] | None = None, options: type | None = None,
             check: Callable[[ModelConfig], None] | None = None) -> Callable[[Builder], Builder]:
    """Decorator: make ``builder`` available as ``get(name)``, with optional named presets, the
    dataclass that ``[model.options]`` must fit (None: the architecture takes no options) and a
    ``check`` of the other ``[model]`` fields it reads (raises ConfigError), run by :func:`check_model_config`."""
    def decorate(builder: Builder) -> Builder:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model {name!r} is already registered by {_BUILDERS[name].__module__}")
        _BUILDERS[name] = builder
        _PRESETS[name] = dict(presets or {})
        _OPTIONS[name] = options
        if check is not None:
            _CHECKS[name] = check
        return builder
    return decorate


def check_model_config(config: ModelConfig) -> None:
    """Fail (ConfigError naming the key) on what building the model would reject, without building it:
    an unknown ``model.name``, bad ``[model.options]`` and the architecture's own checks (cnn9's variant)."""
    model_options(config)
    if config.name in _CHECKS:
        _CHECKS[config.name](config)


def model_options(config: ModelConfig) -> Any:
    """``config.options`` parsed into the architecture's option dataclass (unknown or badly typed
    keys fail naming ``model.options.<key>``); None for an architecture without options."""
    get(config.name)
    cls = _OPTIONS[config.name]
    if cls is None:
        if config.options:
            raise ConfigError(f"model.options: {config.name} takes no options; remove the table")
        return None
    return from_dict(cls, config.options, "model.options.")


def get(name: str) -> Builder:
    """The builder registered as ``name``; unknown names fail naming the known ones."""
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ConfigError(f"model.name: unknown model {name!r}; known: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_BUILDERS)


def presets(name: str) -> dict[str, ModelConfig]:
    """Named preset configs of model ``name`` (possibly empty)."""
    get(name)
    return dict(_PRESETS[name])


def model_config(name: str) -> ModelConfig:
    """The config a name stands for: a model key (``"xresnet"``, its defaults), ``"model:preset"``
    (``"cnn9:se_w1.0"``) or a preset name found in one model only (``"msc_se_w2.0"``)."""
    if name in _BUILDERS:
        return ModelConfig(name=name)
    model, _, preset = name.rpartition(":")
    if model:
        found = presets(model).get(preset)
        if found is None:
            raise ConfigError(f"{name}: {model} has no preset {preset!r}; presets: {', '.join(presets(model))}")
        return found
    owners = [m for m in list_models() if name in _PRESETS[m]]
    if len(owners) == 1:
        return _PRESETS[owners[0]][name]
    if owners:
        raise ConfigError(f"{name}: preset of several models; write one of "
                          f"{', '.join(f'{m}:{name}' for m in owners)}")
    raise ConfigError(f"{name}: not a model or preset; models: {', '.join(list_models())} "
                      "(`freesound-tf models` lists every preset)")

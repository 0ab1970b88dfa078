"""Checks a composed config against the signatures of the classes it instantiates.

The typed constructors are the schema: every node with a ``_target_`` is compared with its
callable's signature before anything is built, so ``model.latent_dim=abc``, ``data.batch_size=0``
or ``+model.foo=1`` stop with one ``Error:`` line instead of a shape error minutes into training.
Value checks use pydantic on the constructor's type hints (``Annotated[int, Gt(0)]`` for sizes).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from types import UnionType
from typing import Any, TypeVar

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter, ValidationError

from src.utils.errors import UserError

T = TypeVar("T")

_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def check_config(cfg: DictConfig, keys: Iterable[str]) -> None:
    """Raises :class:`UserError` for the first node under ``keys`` that cannot be instantiated."""
    for key in keys:
        try:
            node = OmegaConf.select(cfg, key, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise _config_error(exc, key) from None
        if node is not None:
            _check_node(node, key)


def task_options(options_type: type[T], node: DictConfig, path: str = "") -> T:
    """The checked instance of a dataclass of options read from ``node``'s keys of the same names.

    One dataclass per entry point declares its top-level keys (``conf/<task>.yaml``); its field
    types are the schema, checked like a constructor's. Keys the dataclass does not declare are
    config groups (checked by :func:`check_config`) or Hydra's own. A field typed with another
    options dataclass (``fill: FillOptions | None``) is a config group of plain keys: its node is
    read the same way, key by key, and a key that dataclass does not declare is an error.
    """
    names = [f.name for f in dataclasses.fields(options_type)]
    for name in names:
        if OmegaConf.is_missing(node, name):
            key = f"{path}.{name}" if path else name
            raise UserError(f"{key} has no value: set {key}=<value> on the command line.")
    try:
        hints = typing.get_type_hints(options_type, include_extras=True)
    except Exception:
        hints = {}  # an annotation that cannot be resolved here: its values are checked flat
    nested: dict[str, Any] = {}
    for name in names:
        inner = _options_dataclass(hints.get(name))
        child = node._get_node(name) if name in node else None
        if inner is not None and isinstance(child, DictConfig):
            key = f"{path}.{name}" if path else name
            known = {f.name for f in dataclasses.fields(inner)}
            for extra in (str(k) for k in child if str(k) not in known):
                raise UserError(
                    f"{key}.{extra} is not an option of {key}. Options: {', '.join(sorted(known))}."
                )
            nested[name] = task_options(inner, child, path=key)
    container = OmegaConf.to_container(node, resolve=True)
    values = {name: container.get(name) for name in names if name in node and name not in nested}
    check_callable_args(options_type, values, path=path)
    return options_type(**values, **nested)


def _options_dataclass(annotation: Any) -> type | None:
    """The options dataclass in ``annotation`` (itself, or a member of ``X | None``), else None."""
    if annotation is None:
        return None
    candidates = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, UnionType)
        else (annotation,)
    )
    found = [c for c in candidates if dataclasses.is_dataclass(c) and isinstance(c, type)]
    return found[0] if len(found) == 1 else None


def check_callable_args(fn: Callable[..., Any], values: dict[str, Any], path: str) -> None:
    """Checks plain values (already resolved) against ``fn``'s signature, e.g. a task's options."""
    for name, value in values.items():
        _check_value(fn, name, value, f"{path}.{name}" if path else name)


def _check_node(node: Any, path: str) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            _check_target_node(node, path)
        else:
            for key in node:
                _check_node(node._get_node(key), f"{path}.{key}")
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            _check_node(node._get_node(i), f"{path}[{i}]")


def _check_target_node(node: DictConfig, path: str) -> None:
    target_name = node._target_
    try:
        target = get_object(target_name)
    except Exception as exc:
        raise UserError(f"{path}._target_={target_name} cannot be imported ({exc}).") from None
    params = _parameters(target)
    partial = bool(node.get("_partial_", False))
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    for key in node:
        if key in _HYDRA_KEYS:
            continue
        child_path = f"{path}.{key}"
        if key not in params and not takes_kwargs:
            options = ", ".join(
                n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL
            )
            raise UserError(f"{child_path} is not an option of {target_name}. Options: {options}.")
        child = node._get_node(key)
        if isinstance(child, DictConfig | ListConfig) and _contains_target(child):
            _check_node(child, child_path)
            continue
        try:
            if isinstance(child, DictConfig | ListConfig):
                value = OmegaConf.to_container(child, resolve=True, throw_on_missing=True)
            else:
                value = node[key]
        except OmegaConfBaseException as exc:
            raise _config_error(exc, child_path) from None
        if key in params:
            _check_value(target, key, value, child_path)

    if partial:
        _construct_on_stand_in(node, target, path)
        return
    for name, param in params.items():
        required = param.default is inspect.Parameter.empty and param.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        if required and name not in node:
            raise UserError(f"{path}.{name} is required by {target_name}: set {path}.{name}=<value>.")


def _contains_target(node: DictConfig | ListConfig) -> bool:
    if isinstance(node, DictConfig):
        return "_target_" in node or any(
            isinstance(node._get_node(k), DictConfig | ListConfig) and _contains_target(node._get_node(k))
            for k in node
        )
    return any(
        isinstance(node._get_node(i), DictConfig | ListConfig) and _contains_target(node._get_node(i))
        for i in range(len(node))
    )


def _check_value(target: Callable[..., Any], name: str, value: Any, path: str) -> None:
    annotation = _type_hints(target).get(name)
    if annotation is None:
        return
    adapter = _adapter(annotation)
    if adapter is None:
        return
    try:
        adapter.validate_python(value, strict=_is_strict_scalar(value))
    except ValidationError as exc:
        reason = "; ".join(err["msg"] for err in exc.errors())
        raise UserError(f"{path}={value!r} is invalid: {reason}. Change {path}.") from None


def _is_strict_scalar(value: Any) -> bool:
    # Hydra already parses `x=3` to int and `x=true` to bool: refusing lax coercion keeps
    # `x=yes` (a str) from silently becoming True. Lists and dicts keep lax item checks.
    return isinstance(value, str | bool)


def _parameters(target: Any) -> dict[str, inspect.Parameter]:
    """The keyword parameters ``target`` accepts.

    This project's classes forward ``**kwargs`` to their base class, so for them the base
    constructors' parameters are followed; a third-party ``**kwargs`` (e.g. ``DDPStrategy``
    passing options on to torch's DDP) accepts any key.
    """
    params: dict[str, inspect.Parameter] = {}
    for fn in _signature_chain(target):
        try:
            own = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return {}
        for name, param in own.items():
            if name != "self" and name not in params:
                params[name] = param
        forwards = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values())
        if not forwards:
            return {n: p for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        if not getattr(fn, "__module__", "").startswith("src."):
            return params
    return params


def _signature_chain(target: Any) -> list[Callable[..., Any]]:
    """``[target]`` for functions; the ``__init__`` of each class in the MRO for classes."""
    if not inspect.isclass(target):
        return [target]
    return [
        klass.__dict__["__init__"]
        for klass in target.__mro__
        if "__init__" in klass.__dict__ and klass is not object
    ]


@functools.cache
def _type_hints(target: Any) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for fn in reversed(_signature_chain(target)):
        try:
            hints.update(typing.get_type_hints(fn, include_extras=True))
        except Exception:
            continue
    return hints


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except (PydanticSchemaGenerationError, TypeError, ValueError, NameError):
        # An annotation pydantic cannot express (a framework class, a callable): left to the target.
        return None


def _config_error(exc: OmegaConfBaseException, path: str) -> UserError:
    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", None) or path
        return UserError(f"{key} has no value: set {key}=<value>.")
    msg = " ".join(str(getattr(exc, "msg", None) or exc).split())
    return UserError(f"{path}: {msg}")


def _construct_on_stand_in(node: DictConfig, target: Any, path: str) -> None:
    """Builds an optimizer or scheduler partial once on a stand-in parameter.

    Partials are completed only in ``configure_optimizers``, after the data are loaded; values
    their constructors reject (``lr=-1``, ``betas=[2, 0]``) would surface there as a traceback.
    Building them here on one scalar parameter turns each into an ``Error:`` line before any work.
    """
    import torch

    if not isinstance(target, type):
        return
    is_optimizer = issubclass(target, torch.optim.Optimizer)
    is_scheduler = issubclass(target, torch.optim.lr_scheduler.LRScheduler)
    if not (is_optimizer or is_scheduler):
        return
    kwargs = {
        key: OmegaConf.to_container(value, resolve=True)
        if isinstance(value, DictConfig | ListConfig)
        else value
        for key, value in ((k, node[k]) for k in node if k not in _HYDRA_KEYS)
    }
    stand_in = [torch.nn.Parameter(torch.zeros(1))]
    try:
        if is_optimizer:
            target(stand_in, **kwargs)
        else:
            target(torch.optim.SGD(stand_in, lr=1.0), **kwargs)
    except (ValueError, TypeError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())
        raise UserError(
            f"{path} is invalid: {target.__name__} rejects it ({reason}). Change the values under {path}."
        ) from None

"""Structured configs: the base class of every config dataclass, its checks, and the schema registry.

Each option of a conf group is one dataclass next to the code it configures (LinearConfig in
problems/linear.py, SpectralConfig in inits.py, ...), registered with ``@register(group, name)``:
its fields are the option's keys and its defaults the only defaults. ``register_configs()`` stores
them in hydra's ConfigStore as schema/<group>/<name>, which conf/<group>/<name>.yaml extends with
only what differs, so hydra refuses unknown keys and wrong types while composing, and the checks
declared beside the fields (``checked``) or in ``__post_init__`` refuse values out of range. The Python
API builds the same dataclasses, so a bad value gets the same one-line message from either:
``<group>.<field>=<value>: allowed <range>``. The apps turn ``ConfigError`` into exit code 2.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
import re
import typing
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Optional


class ConfigError(ValueError):
    """A bad config value; its message is one line naming the field and the allowed values."""


def fail(where: str, name: str, value: Any, allowed: str):
    key = f"{where}.{name}" if where else name
    raise ConfigError(f"{key}={value!r}: allowed {allowed}")


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_num(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x))


def _within(v, lo, hi, lo_open=False) -> bool:
    return (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)


def _interval(lo, hi, lo_open=False) -> str:
    return f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"


def checked(default, how: str, *args, **kwargs):
    """A field with its check declared beside it: ``Config.__post_init__`` calls ``self._<how>(name, *args,
    **kwargs)``; ``alpha: float = checked(1e-3, "num", 0)`` is checked as ``self._num("alpha", 0)``."""
    return dataclasses.field(default=default, metadata={"check": (how, args, kwargs)})


def check_device(where: str, device, name: str = "device") -> str:
    """The one device check: cpu, cuda or cuda:N, and that GPU present on this machine."""
    dev = str(device)
    if not re.fullmatch(r"cpu|cuda(:\d+)?", dev):
        fail(where, name, dev, "cpu, cuda or cuda:N")
    if dev != "cpu":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            fail(where, name, dev, "cpu (CUDA is not available on this machine)")
        if int(dev.partition(":")[2] or 0) >= count:
            fail(where, name, dev, f"cpu, cuda or cuda:N with N < {count} (the GPUs visible)")
    return dev


class Config:
    """Base of every config dataclass: unknown keys refused by name, and field checks whose
    messages carry the group's path ``where`` (``build`` sets the caller's, e.g. methods.x.init)."""

    where: ClassVar[str] = ""

    def __new__(cls, *args, _where: Optional[str] = None, **values):
        # Before the generated __init__, which would raise a TypeError for an unknown key.
        where = cls.where if _where is None else _where
        cls = cls._option(values, where)
        known = [f.name for f in dataclasses.fields(cls)]
        for key, value in values.items():
            if key not in known:
                fail(where, key, value, cls._unknown(key))
        return super().__new__(cls)

    @classmethod
    def _option(cls, values: dict, where: str) -> type:
        return cls

    @classmethod
    def _unknown(cls, key: str) -> str:
        return "a known key: " + ", ".join(sorted(f.name for f in dataclasses.fields(cls)))

    def __post_init__(self):
        """Run the checks declared with ``checked``: renamed keys first, then the others in field order. A
        subclass that only changes a default (``kappa: float = 1.0``) keeps its base's check; a field that
        defaults to None also takes None."""
        declared = []
        for f in dataclasses.fields(self):
            bases = (getattr(c, "__dataclass_fields__", {}).get(f.name) for c in type(self).__mro__)
            check = next((b.metadata["check"] for b in bases if b is not None and "check" in b.metadata), None)
            if check and not (f.default is None and getattr(self, f.name) is None):
                declared.append((f.name, *check))
        for name, how, args, kwargs in sorted(declared, key=lambda c: c[1] != "renamed"):
            getattr(self, "_" + how)(name, *args, **kwargs)

    def _int(self, name, lo=None, hi=None, allow=()):
        v = getattr(self, name)
        if v in allow:
            return
        if not (_is_int(v) and _within(v, lo, hi)):
            fail(self.where, name, v, f"integer in {_interval(lo, hi)}" + "".join(f" or {a!r}" for a in allow))
        setattr(self, name, int(v))

    def _renamed(self, old: str, new: str, version: str = "0.3") -> None:
        """A field renamed in ``version``: the old key (a field defaulting to None, so the CLI still
        takes it) sets the new one, with a warning that names both."""
        value = getattr(self, old)
        if value is None:
            return
        key = f"{self.where}.{old}" if self.where else old
        warnings.warn(f"{key} is renamed {new} in lorasim {version}; {key} will be removed", FutureWarning,
                      stacklevel=4)
        setattr(self, new, value)
        setattr(self, old, None)

    def _bool(self, name):
        v = getattr(self, name)
        if not isinstance(v, bool):
            fail(self.where, name, v, "true or false")

    def _num(self, name, lo=None, hi=None, lo_open=False):
        v = getattr(self, name)
        if not (_is_num(v) and _within(v, lo, hi, lo_open)):
            fail(self.where, name, v, f"finite number in {_interval(lo, hi, lo_open)}")
        setattr(self, name, float(v))

    def _rows(self, name):
        if not isinstance(getattr(self, name), (list, tuple)):
            fail(self.where, name, getattr(self, name), "a nested list (rows of numbers)")

    def _device(self, name):
        check_device(self.where, getattr(self, name), name)

    def _choice(self, name, options):
        v = getattr(self, name)
        if v not in options:
            fail(self.where, name, v, "one of " + ", ".join(map(str, options)))

    def _numlist(self, name, length=None, positive=True):
        v = getattr(self, name)
        if v is None:
            return
        v = list(v)
        if not (v and all(_is_num(x) and (x > 0 or not positive) for x in v) and length in (None, len(v))):
            size = f" of length {length}" if length is not None else ""
            fail(self.where, name, v, f"null or a list{size} of finite {'positive ' if positive else ''}numbers")
        setattr(self, name, [float(x) for x in v])


def build(cls, values: dict, where: Optional[str] = None):
    """Build a config dataclass from a plain dict; its messages name ``where`` (default: the group)."""
    where = cls.where if where is None else where
    cfg = cls.__new__(cls, _where=where, **values)
    cfg.where = where  # before __init__, so that __post_init__'s messages carry it
    cfg.__init__(**values)
    return cfg


# -- the registry: group -> option name -> its dataclass --------------------------------------------
_OPTIONS: dict[str, dict[str, type]] = {}
_MODULES = {"problem": "lorasim.problems", "init": "lorasim.inits", "solver": "lorasim.solvers", "run": "lorasim.engine"}


def register(group: str, name: str):
    """Class decorator: the dataclass is option ``name`` of conf group ``group`` (its schema)."""
    def add(cls):
        _OPTIONS.setdefault(group, {})[name] = cls
        return cls
    return add


def options(group: str) -> dict[str, type]:
    """A group's option dataclasses by name (importing the module that defines them)."""
    importlib.import_module(_MODULES[group])
    return _OPTIONS[group]


def defaults(group: str) -> dict[str, dict]:
    """Each option's fields and defaults, e.g. defaults("init")["lora_one"]["gamma"] == 128.0."""
    return {name: {f.name: f.default for f in dataclasses.fields(cls)} for name, cls in options(group).items()}


def register_configs() -> None:
    """Store every option's dataclass in hydra's ConfigStore as schema/<group>/<name>, the schema that
    conf/<group>/<name>.yaml extends. Each app calls this before hydra composes its config."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group in _MODULES:
        for name, cls in options(group).items():
            store.store(group=f"schema/{group}", name=name, node=cls)


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}


def type_error(e: Exception) -> Optional[ConfigError]:
    """hydra's error for a value of the wrong type on a schema field (``problem.d=abc``) in the one-line
    form, ``problem.d=abc: allowed an integer``; None for any other error."""
    from omegaconf.errors import ValidationError

    cause = e if isinstance(e, ValidationError) else e.__cause__
    if not isinstance(cause, ValidationError) or not cause.full_key or not dataclasses.is_dataclass(cause.object_type):
        return None
    hint = typing.get_type_hints(cause.object_type).get(cause.full_key.rsplit(".", 1)[-1])
    args = typing.get_args(hint)
    optional = type(None) in args
    kind = next((a for a in args if a is not type(None)), hint) if optional else hint
    given = re.match(r"Error merging override \S+?=(.*)", str(e)) or re.search(r"Value '(.*?)'", str(cause))
    value = given.group(1) if given else "null"
    allowed = _TYPE_WORDS.get(typing.get_origin(kind) or kind, "a value") + (" or null" if optional else "")
    return ConfigError(f"{cause.full_key}={value}: allowed {allowed}")


class Named(Config):
    """Base of a group whose options are told apart by ``name`` (the inits): each option is a subclass
    registered under its name, and the base builds the named one, so InitConfig(name="spectral",
    zeta=2.0) is a SpectralConfig; a key of another option is refused naming the options that take it."""

    group: ClassVar[str] = ""

    @classmethod
    def _option(cls, values: dict, where: str) -> type:
        named = options(cls.group)
        if cls in named.values():
            return cls
        name = values.get("name", cls.name)
        if name not in named:
            fail(where, "name", name, "one of " + ", ".join(named))
        return named[name]

    @classmethod
    def _unknown(cls, key: str) -> str:
        takers = [n for n, c in options(cls.group).items() if key in {f.name for f in dataclasses.fields(c)}]
        if not takers:
            return super()._unknown(key)
        return f"only with name in {', '.join(takers)} (name is {cls.name})"


@dataclass
class InitConfig(Named):
    """An init by name; the options and their parameters are in lorasim/inits.py."""

    name: str = "small_random"
    shifts_w0: ClassVar[bool] = False  # the init subtracts itself from W0, so its run has a problem of its own
    group: ClassVar[str] = "init"
    where: ClassVar[str] = "init"

"""Classes named in configs and checkpoints (``package.module.Class``): finding them safely, naming them.

Encoders and front-ends are stored in checkpoints by class path. Reading a checkpoint must not run
arbitrary installed code, so only recognizer's own modules, and modules the program has already
imported, are looked in; a component defined elsewhere is used by importing its module first (a
config's ``class_path`` does that, through jsonargparse).
"""

from __future__ import annotations

import importlib
import sys
from typing import TypeVar

#: modules under this prefix may be imported to find a class a checkpoint names
OWN_PACKAGE = "recognizer."

T = TypeVar("T")


def resolve(class_path: object, base: type[T], what: str) -> type[T]:
    """The subclass of ``base`` named by ``class_path``; a one-line ValueError says what is wrong."""
    if not isinstance(class_path, str) or "." not in class_path:
        raise ValueError(f"a {what} class_path is a string like {name_of(base)}, got {class_path!r}")
    module_name, _, name = class_path.rpartition(".")
    if module_name not in sys.modules and not module_name.startswith(OWN_PACKAGE):
        raise ValueError(
            f"{what} class_path {class_path!r}: module {module_name!r} is not imported, and only recognizer's "
            "own modules are imported to find a class; import it first"
        )
    try:
        cls = getattr(importlib.import_module(module_name), name, None)
    except Exception as error:  # a broken or missing module: say why, in one line
        raise ValueError(f"{what} class_path {class_path!r}: cannot import {module_name}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{what} class_path {class_path!r} does not name a subclass of {name_of(base)}")
    return cls


def name_of(cls: type) -> str:
    """``recognizer.encoders.BLSTMEncoder`` rather than ``recognizer.encoders.blstm.BLSTMEncoder`` when
    the package exports the class: the name users write in configs."""
    package = cls.__module__.rpartition(".")[0]
    if package and getattr(sys.modules.get(package), cls.__qualname__, None) is cls:
        return f"{package}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"

"""Working copies of a user's model: a deep copy that shares frozen weights and rebinds what the script bound."""

from __future__ import annotations

from typing import Any


def work_copy(model: Any, device: Any = None) -> Any:
    """A copy of ``model`` to run and train on, leaving the user's model untouched.

    Frozen parameters never change (no gradient reaches them, so no optimizer moves them): the copy shares them
    with the user's model instead of duplicating them, unless the copy moves to another device.
    """
    import copy

    import torch

    params = list(model.parameters())
    here = params[0].device if params else torch.device("cpu")
    device = torch.device(device) if device is not None else torch.device("cpu")
    memo: dict[int, Any] = {}
    if here == device:
        for p in params:
            if not p.requires_grad:
                memo[id(p)] = p
    work = copy.deepcopy(model, memo)
    _rebind_functions(work, memo)
    return work.to(device) if here != device else work


def _rebind_functions(work: Any, memo: dict[int, Any]) -> None:
    """Point functions set on the copy's modules at the copy.

    ``copy.deepcopy`` shares plain functions: a ``forward`` the script set on a module (``layer.forward =
    checkpointed``, closing over ``layer`` and ``layer.forward``) would run the user's modules from the copy, so
    the copy's own parameters would never be used. Such a function is rebuilt with its defaults and closure mapped
    to the copied objects.
    """
    import functools
    import types

    mapped = remapper(memo)
    for module in work.modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, (types.FunctionType, functools.partial, types.MethodType)):
                new = mapped(value)
                if new is not value:
                    vars(module)[name] = new


def remapper(memo: dict[int, Any]) -> Any:
    """A function mapping a value to its counterpart under ``memo`` (id of an original -> its counterpart): the
    counterpart itself, or a method, partial or function rebuilt so that what it is bound to, holds as arguments
    or closes over is mapped too (a few levels deep)."""
    import functools
    import types

    done: dict[int, Any] = {}

    def mapped(value: Any, depth: int = 0) -> Any:
        if id(value) in memo and id(value) != id(memo):
            return memo[id(value)]
        if depth > 3:
            return value
        if isinstance(value, types.MethodType):
            owner = mapped(value.__self__, depth + 1)
            func = mapped(value.__func__, depth + 1)
            if owner is value.__self__ and func is value.__func__:
                return value
            return types.MethodType(func, owner)
        if isinstance(value, functools.partial):
            func = mapped(value.func, depth + 1)
            args = tuple(mapped(a, depth + 1) for a in value.args)
            kwargs = {k: mapped(v, depth + 1) for k, v in value.keywords.items()}
            if (
                func is value.func
                and all(x is y for x, y in zip(args, value.args))
                and all(kwargs[k] is v for k, v in value.keywords.items())
            ):
                return value
            return functools.partial(func, *args, **kwargs)
        if isinstance(value, types.FunctionType):
            return function(value, depth)
        return value

    def function(fn: types.FunctionType, depth: int) -> types.FunctionType:
        if id(fn) in done:
            return done[id(fn)]
        done[id(fn)] = fn  # a function reaching itself through its closure stays as it is
        changed = False

        def remap(v: Any) -> Any:
            nonlocal changed
            new = mapped(v, depth + 1)
            changed = changed or new is not v
            return new

        defaults = tuple(remap(d) for d in fn.__defaults__) if fn.__defaults__ else fn.__defaults__
        kwdefaults = {k: remap(v) for k, v in fn.__kwdefaults__.items()} if fn.__kwdefaults__ else None
        cells = []
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                cells.append(cell)
                continue
            new = remap(contents)
            cells.append(cell if new is contents else types.CellType(new))
        if not changed:
            return fn
        new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, defaults, tuple(cells) or None)
        new.__kwdefaults__ = kwdefaults
        new.__dict__.update(fn.__dict__)
        new.__qualname__, new.__module__, new.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
        done[id(fn)] = new
        return new

    return mapped

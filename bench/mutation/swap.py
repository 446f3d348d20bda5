"""A mutant put into a running process by swapping function code, without importing
anything again.

    plan = swap_plan(pristine_source, mutated_source, filename)
    swap(plan, live_functions(filename))

Both sources are compiled; their code objects are paired by qualified name and first
line, and compared on what decides behaviour (bytecode, constants, names, variables,
exception table, flags, arguments), not on column positions. Then:
- nothing differs: the mutant compiles to the same program (`SAME`);
- only function bodies differ: the plan is, for each changed function, the outermost
  function that holds it (a nested function is made again from its parent's
  constants on every call) and the changed function itself (closures made already),
  each with its mutated code;
- the module's own code or a class body differs (a constant, a default, a decorator,
  a class attribute), or the functions do not pair up: `None`, the mutant cannot be
  swapped in and is tested by writing the file and importing it afresh.

`live_functions` finds every function object made from the file (through the garbage
collector, so a function a decorator wraps, a registry holds or another module
imported by name is found too); `swap` sets each one's `__code__`, so every holder
of the function runs the mutant from then on.

The rule: a plan is made only when the rest of the module compiles to exactly what
the pristine one does; anything else is `None`, never a partial swap.
"""

from __future__ import annotations

import gc
import os
import types
from collections import defaultdict
from typing import Final

Key = tuple[str, int]
Plan = list[tuple[Key, types.CodeType]]
SAME: Final = "same"


def _is_function(code: types.CodeType) -> bool:
    # A function's body (and a comprehension's, a lambda's) has fresh locals; a module
    # or a class body runs in a namespace.
    return bool(code.co_flags & 0x2)  # CO_NEWLOCALS


def _key(code: types.CodeType) -> Key:
    return (code.co_qualname, code.co_firstlineno)


def _own(code: types.CodeType) -> tuple:
    """What decides the code's behaviour, with nested code objects named, not compared."""
    consts = tuple(
        ("<code>", *_key(c)) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c))
        for c in code.co_consts
    )
    return (
        code.co_code,
        consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_exceptiontable,
        code.co_flags,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
    )


def _index(module: types.CodeType) -> dict[Key, tuple[types.CodeType, Key | None]]:
    """Every code object under the module: {key: (code, outermost function holding it)}."""
    out: dict[Key, tuple[types.CodeType, Key | None]] = {}

    def walk(code: types.CodeType, top: Key | None) -> None:
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                here = top or (_key(const) if _is_function(const) else None)
                out[_key(const)] = (const, here)
                walk(const, here)

    walk(module, None)
    return out


def swap_plan(pristine: str, mutated: str, filename: str) -> Plan | str | None:
    """The functions to swap to put the mutant in (see the module's docstring)."""
    before = compile(pristine, filename, "exec", dont_inherit=True)
    after = compile(mutated, filename, "exec", dont_inherit=True)
    old, new = _index(before), _index(after)
    if old.keys() != new.keys():
        return None
    changed_module = _own(before) != _own(after)
    changed = [k for k in old if _own(old[k][0]) != _own(new[k][0])]
    if not changed and not changed_module:
        return SAME
    if changed_module or any(new[k][1] is None for k in changed):
        return None  # a class body: its attributes were made when the module was imported
    plan: dict[Key, types.CodeType] = {}
    for key in changed:
        top = new[key][1]
        assert top is not None
        plan[top] = new[top][0]
        plan[key] = new[key][0]
    for key, code in plan.items():
        if code.co_freevars != old[key][0].co_freevars:
            return None
    return sorted(plan.items())


def live_functions(filename: str) -> dict[Key, list[types.FunctionType]]:
    """Every function object in the process made from `filename`'s code."""
    wanted = os.path.realpath(filename)
    seen: dict[str, bool] = {}
    out: dict[Key, list[types.FunctionType]] = defaultdict(list)
    for obj in gc.get_objects():
        if not isinstance(obj, types.FunctionType):
            continue
        name = obj.__code__.co_filename
        if name not in seen:
            seen[name] = os.path.realpath(name) == wanted
        if seen[name]:
            out[_key(obj.__code__)].append(obj)
    return out


def swap(plan: Plan, functions: dict[Key, list[types.FunctionType]]) -> int:
    """Put the plan's code into the live functions; answers how many were swapped.
    Raises LookupError when a function the plan must change has no live object."""
    swapped = 0
    for key, code in plan:
        found = functions.get(key, [])
        if not found and code.co_qualname.count("<locals>") == 0:
            raise LookupError(f"no live function {key[0]} (line {key[1]})")
        for fn in found:
            fn.__code__ = code
            swapped += 1
    return swapped

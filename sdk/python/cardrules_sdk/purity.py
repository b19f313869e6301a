"""Guards for what a policy may not do: read the clock, draw random numbers, open files
or write output.

A policy is built with `componentize-py componentize --stub-wasi`, which replaces every
WASI import with a stub that traps. So `time.time()`, `open(…)` or `print(…)` in a policy
already cannot decide anything: the instance traps and the host answers `policy-error`.
But the host then says only "wasm `unreachable` instruction executed". These guards
replace the usual ways in with functions that raise `ImpureCall` naming the call, which
`decide` reports to the host (`diagnostics.panicked`) before the instance traps, so the
`policy-error` says what the policy did.

`random` is the other case: under `--stub-wasi` its seed is baked into the component at
build time, so `random.random()` does not trap but gives the same number on every call —
deterministic, and surely not what its author meant. Its module-level functions are
guarded too; a `random.Random(seed)` of the policy's own stays allowed, since it is as
deterministic as its seed.

Installed once, when the SDK is imported (at build time, in the snapshot componentize-py
takes), so they cost nothing per decision.
"""

from __future__ import annotations

import builtins
import os
import random
import time
from typing import Callable, NoReturn


class ImpureCall(RuntimeError):
    """A policy called something a pure policy cannot have: a clock, randomness, a file,
    output. Nothing is decided: the host answers `policy-error` with this message."""


def _forbidden(name: str, why: str) -> Callable[..., NoReturn]:
    def guard(*args: object, **kwargs: object) -> NoReturn:
        raise ImpureCall(f"{name} is not available to a policy: {why}")

    guard.__name__ = name.rsplit(".", 1)[-1].rstrip("()")
    guard.__doc__ = f"Refused: {why}"
    return guard


_CLOCK = (
    "a policy has no clock; use the request's `at` and `local`, and `calendar`"
)
_RANDOM = (
    "a policy decides the same request the same way every time "
    "(under --stub-wasi the seed is fixed at build time)"
)
_FILES = "a policy has no files; read facts through `ledger` and `[config]`"
_OUTPUT = "a policy has no output; say why with checks (`check`, `within`, …)"


def install() -> None:
    """Replaces the clock, module-level randomness, files and output with guards."""
    for name in (
        "time",
        "time_ns",
        "monotonic",
        "monotonic_ns",
        "perf_counter",
        "perf_counter_ns",
        "process_time",
        "process_time_ns",
        "sleep",
    ):
        if hasattr(time, name):
            setattr(time, name, _forbidden(f"time.{name}()", _CLOCK))
    for name in (
        "random",
        "randint",
        "randrange",
        "randbytes",
        "choice",
        "choices",
        "shuffle",
        "sample",
        "uniform",
        "gauss",
        "getrandbits",
        "seed",
    ):
        if hasattr(random, name):
            setattr(random, name, _forbidden(f"random.{name}()", _RANDOM))
    os.urandom = _forbidden("os.urandom()", _RANDOM)
    builtins.open = _forbidden("open()", _FILES)
    builtins.print = _forbidden("print()", _OUTPUT)
    builtins.input = _forbidden("input()", _OUTPUT)

"""The claim kit (not a claim): settings, pass rules and, with ``lorasim.verify.Context.figure``,
figures. How a claim uses it: theory/README.md, "Writing a claim"; shared numerics: theory/numerics.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lorasim.config import fail
from lorasim.verify import Verdict


@dataclass(kw_only=True)
class ClaimSettings:
    """Base of a claim's ``Settings``, whose fields are the keys of its conf/claims/CNN.yaml blocks."""

    device: str = "cpu"  # lorasim-verify's device=, unless the yaml block pins one


@dataclass(kw_only=True)
class TeacherSettings(ClaimSettings):
    """A claim on teachers of one shape (d, k, r*), repeated over ``seeds`` seeds."""

    d: int
    k: int
    r_star: int
    seeds: int


def parse(cls, raw: dict, ctx):
    """The claim's ``Settings`` from its yaml block at ``ctx.scale``. An unknown or missing key is
    refused in one line naming its override path: ``claims.C09.ci.kapas=[1]: allowed a known key: …``."""
    where = f"claims.{cls.__module__.rsplit('.', 1)[-1][:3].upper()}.{ctx.scale}"
    fields = dataclasses.fields(cls)
    known = sorted(f.name for f in fields)
    for key, value in raw.items():
        if key not in known:
            fail(where, key, value, "a known key: " + ", ".join(known))
    for f in fields:
        if f.name not in raw and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(where, f.name, None, "a value (the key is required)")
    return cls(**raw)


class Checks:
    """A claim's named pass rules. It passes when every rule holds (and it has one); the verdict lists
    each rule in report.md and appends a failed rule's text, which carries the numbers that broke it,
    to the measured line."""

    def __init__(self):
        self.rules: dict[str, tuple[bool, str]] = {}

    def add(self, name: str, ok, failure: str = "") -> bool:
        if name in self.rules:
            raise ValueError(f"check {name!r} added twice")
        self.rules[name] = (bool(ok), failure)
        return bool(ok)

    @property
    def passed(self) -> bool:
        return bool(self.rules) and all(ok for ok, _ in self.rules.values())

    def verdict(self, prediction: str, measured: str, notes: str = "", **kw) -> Verdict:
        """The claim's Verdict; ``kw`` are Verdict's other fields (fits, table, figures)."""
        failed = [f"{name}: {text}" if text else name for name, (ok, text) in self.rules.items() if not ok]
        listing = "\n".join(f"- {name}: " + ("ok" if ok else "**FAIL**" + (f": {text}" if text else ""))
                            for name, (ok, text) in self.rules.items())
        return Verdict(prediction=prediction, measured=measured + ("; FAILED " + "; ".join(failed) if failed else ""),
                       passed=self.passed, notes="Checks:\n\n" + listing + ("\n\n" + notes if notes else ""), **kw)

"""Golden frames: every run in tests/golden_runs.py reproduces its stored frame bit for bit.

They were saved before the 0.3 refactor (one engine, solver transforms, structured configs), so
a refactor that changes one floating-point operation anywhere on these paths fails here. The
tolerance is zero on purpose: these are CPU float64 runs with one thread, which are deterministic on one
machine and library build.
Rewritten four times since, each time with the change of numbers measured and said (README changelog): the
batched rows (≤ 3.5e-14 relative), the CPU products through numpy's BLAS (issue 17), the risk from a QR of
A's part outside ΔL's span (one loss value of a population run, 6.4e-16 relative; then 4.2e-16 from its pairwise sum)
and the teacher's step through ΔW's factors (3 frames: ≤ 6.7e-15 relative, and an angle at round-off, 3.7e-16 → 2.7e-16).
On another machine they need not be equal: on the H200 host's CPU (torch 2.11.0, numpy 2.5.2) frames differ (batch and CLI
runs among them), at 103aaab as at later commits. So tests/golden/environment.json records where the frames were
written (golden_runs.environment), and a difference elsewhere is a skip that says so, not a failure.
"""
import json

import pytest
import torch

import golden_runs  # tests/golden_runs.py (pytest puts tests/ on sys.path)


@pytest.fixture(scope="module")
def frames():
    torch.set_num_threads(1)
    return golden_runs.compute()


def test_golden_frames_bitwise(frames):
    stored = json.loads(golden_runs.GOLDEN.read_text())
    recorded = json.loads(golden_runs.ENVIRONMENT.read_text())
    outcome, why = golden_runs.verdict(frames, stored, golden_runs.environment(), recorded)
    if outcome == "skip":
        pytest.skip(why)
    assert outcome == "pass", why


def test_golden_verdict_fails_a_change_where_the_frames_were_written():
    """A changed frame fails in the environment that wrote the frames and is skipped, with the reason, in
    another; a missing frame fails anywhere. Mutation: skipping every difference passes a refactor's change."""
    env, other = {"torch": "1"}, {"torch": "2"}
    stored = {"a": {"x": "0x1p+0"}, "b": {"x": "0x1p+1"}}
    changed = dict(stored, b={"x": "0x1.0000000000001p+1"})
    assert golden_runs.verdict(stored, stored, env, env) == ("pass", "")
    assert golden_runs.verdict(changed, stored, env, env)[0] == "fail"
    assert golden_runs.verdict(changed, stored, other, env)[0] == "skip"
    assert golden_runs.verdict({"a": stored["a"]}, stored, other, env)[0] == "fail"


def test_golden_catches_one_ulp_of_step_size():
    """Mutation: the spectral+precgd run with its step size one ulp larger is caught."""
    stored = json.loads(golden_runs.GOLDEN.read_text())
    name, key, kw = next(run for run in golden_runs._single_runs() if run[0] == "spectral+precgd")
    torch.set_num_threads(1)
    from lorasim import train

    kw = dict(kw, lr=kw["lr"] * (1 + 2**-52))
    assert golden_runs._encode(train(golden_runs._problems()[key], **kw).to_frame()) != stored[f"single/{name}"]


def test_golden_environment_does_not_change_when_scipy_is_imported():
    """The recorded environment is numpy's BLAS, not every BLAS loaded: importing scipy (its own OpenBLAS) must not
    make the frames' own environment look like another one, which would skip the test. Mutation: recording every
    loaded BLAS fails."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import golden_runs; a = golden_runs.environment(); import scipy.linalg; "
            "b = golden_runs.environment(); assert a == b, (a, b)")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(golden_runs.__file__).parent, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]

"""The one engine (lorasim/engine.py): stop rules, freezing, kept factors, and the single sources
of the Adam update and the divergence rule."""
import ast
import math
from pathlib import Path

import pytest
import torch

import lorasim
from lorasim import plateau, risk_below, train, train_batch
from lorasim.config import ConfigError
from lorasim.engine import diverged

torch.set_num_threads(1)
PACKAGE = Path(__file__).resolve().parent.parent / "lorasim"  # the source tree, whether installed or editable


@pytest.fixture(scope="module")
def linear():
    return lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, kappa=2.0, seed=3)


def test_risk_below_stops_at_the_first_row_below_eps(linear):
    eps = 1e-6
    full = train(linear, init="spectral", rank=2, solver="precgd", lr=0.5, steps=80, metrics="risk").to_frame()
    hit = int(full.loc[full["risk"] < eps, "step"].iloc[0])
    assert 0 < hit < 80
    got = train(linear, init="spectral", rank=2, solver="precgd", lr=0.5, steps=80, metrics="risk",
                stop=risk_below(eps))
    assert got.stopped_step == hit and got.status == "ok"
    assert got.to_frame()["step"].tolist() == list(range(hit + 1))
    assert got.to_frame()["risk"].tolist() == full["risk"].tolist()[:hit + 1]  # the same run, cut short


def test_a_stopped_run_is_frozen_while_the_others_go_on(linear):
    inits = [{"init": "spectral", "rank": 2}, {"init": "small_random", "rank": 2, "seed": 1}]
    lrs = [0.5, 0.01]  # the second run is far from eps after 40 steps
    alone = [train_batch(linear, [s], solver="precgd", lr=lr, steps=40, metrics="risk")[0] for s, lr in zip(inits, lrs)]
    eps = 0.5 * (alone[0].rows[5]["risk"] + alone[0].rows[6]["risk"])  # the spectral run stops at step 6
    both = train_batch(linear, inits, solver="precgd", lr=lrs, steps=40, metrics="risk", stop=risk_below(eps),
                       keep_factors=True)
    assert both[0].stopped_step == 6 and len(both[0].rows) == 7
    torch.testing.assert_close(both[0].A, both[0].factors[-1][1], rtol=0, atol=0)  # its factors at the stop
    assert both[1].stopped_step is None and both[1].rows[-1]["step"] == 40  # the other run is not cut
    torch.testing.assert_close(torch.tensor([r["risk"] for r in both[1].rows]),
                               torch.tensor([r["risk"] for r in alone[1].rows]), rtol=1e-12, atol=0)


def test_the_batch_ends_when_every_run_has_stopped(linear):
    calls = []

    def after_three(row):
        calls.append(row["step"])
        return row["step"] >= 3

    trajs = train_batch(linear, [{"init": "spectral", "rank": 2}] * 2, solver="gd", lr=0.1, steps=1000,
                        metrics="risk", stop=after_three)
    assert [t.stopped_step for t in trajs] == [3, 3] and max(calls) == 3


def test_plateau_keeps_state_per_run(linear):
    rule = plateau(5)
    # A risk that never improves after step 0 plateaus at step 5, whatever another run does.
    flat = [{"step": s, "risk": 1.0} for s in range(10)]
    first = next(r["step"] for r in flat if rule(r))
    assert first == 5
    got = train(linear, init="spectral", rank=2, solver="precgd", lr=0.5, steps=3000, metrics="risk",
                stop=[plateau(20), risk_below(0.0)])
    risks = [r["risk"] for r in got.rows]
    best = min(range(len(risks)), key=risks.__getitem__)
    assert got.stopped_step == got.rows[best]["step"] + 20 < 3000  # the round-off floor, then 20 more steps


def test_bad_stop_rule_names_the_field(linear):
    with pytest.raises(ConfigError, match=r"^stop=1\.0: allowed"):
        train(linear, init="spectral", rank=2, steps=2, stop=1.0)


def test_divergence_rule():
    assert diverged(math.inf, 1.0) and diverged(math.nan, 1.0)
    assert diverged(1e8 + 1, 0.5) and not diverged(1e8, 0.5)  # the floor max(loss0, 1)
    assert diverged(2e9, 10.0) and not diverged(1e9, 10.0)


def _source(pattern):
    return [(p.relative_to(PACKAGE).as_posix(), i + 1) for p in sorted(PACKAGE.rglob("*.py"))
            for i, line in enumerate(p.read_text().splitlines()) if pattern(line)]


def test_one_adam_update_and_one_divergence_rule_in_lorasim():
    """A second Adam (a second moment update, g ⊙ g) or a second copy of the divergence threshold fails here."""
    assert [f for f, _ in _source(lambda s: "addcmul_(g, g" in s)] == ["solvers.py"]
    assert [f for f, _ in _source(lambda s: "max(loss0" in s)] == ["engine.py"]


def test_no_other_training_loop_calls_the_gradients():
    """Only the engine (and the benchmark's hand-rolled reference loop) steps on problem.grads."""
    callers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("grads", "full_grad") and \
                    isinstance(node.ctx, ast.Load) and not isinstance(getattr(node, "parent", None), ast.FunctionDef):
                callers.add(path.relative_to(PACKAGE).as_posix())
    assert callers <= {"engine.py", "problems/base.py", "problems/linear.py", "problems/relu.py",
                       "problems/sensing.py"}, callers


def test_full_fine_tuning_batches_with_per_run_step_sizes(linear):
    lrs = [0.2, 0.5]
    both = train_batch(linear, [None, {"rank": 3}], solver="full_ft", lr=lrs, steps=12, log_every=4)
    for got, lr, rank in zip(both, lrs, (8, 3)):
        ref = train(linear, solver="full_ft", lr=lr, steps=12, log_every=4, rank=rank).to_frame()
        frame = got.to_frame()
        assert list(frame.columns) == list(ref.columns) and got.init == "full"
        # Batched and 2-D products differ in round-off only: 12 contracting GD steps stay within ~1e3 ulp.
        for col in ("risk", "loss", "sv_A_1", f"sv_A_{rank}"):
            torch.testing.assert_close(torch.tensor(frame[col].to_numpy()), torch.tensor(ref[col].to_numpy()),
                                       rtol=1e-12, atol=1e-15)
    with pytest.raises(ConfigError, match=r"^inits\[0\]="):
        train_batch(linear, [{"init": "spectral", "rank": 2}], solver="full_ft")


# -- deferred rows: kept states, one batched pass, the rules applied afterwards in step order ---------------
@pytest.fixture
def tiny_flushes(monkeypatch):
    """Flushes every 7 steps, in batched passes of 3 runs' rows: row order, grouping and blocks all cross."""
    import lorasim.engine as engine

    monkeypatch.setattr(engine, "LOG_CHUNK_STEPS", 7)
    monkeypatch.setattr(engine, "METRIC_BLOCK_ELEMS", 3 * linear_elems())
    return engine


def linear_elems():
    return lorasim.LinearTeacher(d=20, k=16, r_star=2, n=200, kappa=2.0, seed=3).metric_elems(4)


@pytest.mark.parametrize("metrics", ["full", "lean", "risk"])
def test_deferred_rows_equal_rows_taken_one_step_at_a_time(linear, tiny_flushes, metrics):
    """Each run's rows, computed in deferred batched passes, equal the row function applied to that run's
    kept state at that step alone (1e-12: a batched product may sum in another order). Mutation: rows
    assigned to the wrong run or step, or a padded run's extra singular values kept, fail here."""
    from lorasim.metrics import AlignmentTargets, record_batch, record_lean_batch, record_risk_batch

    inits = [{"init": "small_random", "rank": 4, "seed": 1}, {"init": "spectral", "rank": 2},
             {"init": "small_random", "rank": 3, "seed": 2, "alpha": 0.3}]
    trajs = train_batch(linear, inits, solver="gd", lr=[0.05, 0.2, 0.1], steps=30, log_every=2, metrics=metrics,
                        keep_factors=True)
    for tr, spec in zip(trajs, inits):
        r = spec["rank"]
        assert [row["step"] for row in tr.rows] == list(range(0, 31, 2))
        A0, B0 = tr.factors[0][1][:, :r], tr.factors[0][2][:r]
        ref = AlignmentTargets.from_problem(linear, r)
        for row, (t, A_t, B_t) in zip(tr.rows, tr.factors):
            A_t, B_t = A_t[None, :, :r], B_t[None, :r]
            if metrics == "full":
                want = record_batch(linear, ref, A_t, B_t, A0[None], B0[None], r)[0]
            elif metrics == "lean":
                want = record_lean_batch(linear, ref, A_t, B_t)[0]
            else:
                want = record_risk_batch(linear, A_t, B_t)[0]
            assert set(row) == {"step", *want}
            for name, value in want.items():
                tol = _round_off_scale(want, name)
                assert row[name] == pytest.approx(value, rel=1e-12, abs=tol, nan_ok=True), (t, name)


def _round_off_scale(row: dict, name: str) -> float:
    """1e-12 of the scale a column's round-off is relative to: sines and angles are bounded by 1 and π/2 and
    known to absolute accuracy; a singular value to σ1's; the balance drift to the Grams' (‖A‖² + ‖B‖²,
    bounded by σ1² of each factor times r); the rest relative to themselves."""
    if name.startswith(("align_", "theta_")):
        return 1e-12
    for side in ("A", "B"):
        if name.startswith(f"sv_{side}_"):
            return 1e-12 * row[f"sv_{side}_1"]
    if name == "balance_drift":
        return 1e-12 * 4 * (row["sv_A_1"] ** 2 + row["sv_B_1"] ** 2)
    return 0.0


def test_a_run_ended_inside_a_chunk_keeps_its_state_at_that_step(linear, tiny_flushes):
    """Stops and divergences found at a flush act at their own step: the ended run's factors are its state
    there (an independent run cut at that step, bitwise), and no row after it is kept, though the live
    factors stepped on to the flush. Mutation: taking the live factors fails (they moved on)."""
    inits = [{"init": "spectral", "rank": 2}, {"init": "small_random", "rank": 2, "seed": 1}]
    alone = train(linear, init="spectral", rank=2, solver="gd", lr=0.2, steps=40, metrics="risk")
    eps = 0.5 * (alone.rows[9]["risk"] + alone.rows[10]["risk"])  # crossed at step 10, inside the second chunk
    got = train_batch(linear, inits, solver="gd", lr=[0.2, 0.01], steps=40, metrics="risk", stop=risk_below(eps))
    cut = train_batch(linear, inits, solver="gd", lr=[0.2, 0.01], steps=10, metrics="risk")[0]  # the same batch path
    assert got[0].stopped_step == 10 and got[0].rows[-1]["step"] == 10
    assert torch.equal(got[0].A, cut.A) and torch.equal(got[0].B, cut.B)
    # a step size that diverges: ended at the first row over the rule, with that row's factors
    blow = train_batch(linear, inits, solver="gd", lr=[60.0, 0.01], steps=40, metrics="risk")
    t = blow[0].diverged_step
    assert blow[0].status == "diverged" and t is not None and blow[0].rows[-1]["step"] == t
    before = train_batch(linear, inits, solver="gd", lr=[60.0, 0.01], steps=t, metrics="risk", diverge_factor=1e300)[0]
    assert torch.equal(blow[0].A, before.A)
    assert blow[1].status == "ok" and blow[1].rows[-1]["step"] == 40


def test_no_step_is_taken_from_non_finite_factors(linear, monkeypatch):
    """A run that the loss rule ends at a log step, found by the flush that a later non-finite state
    triggers, is not stepped further: every solver step starts from finite factors, in train() (one run,
    never frozen) and in a batch. Mutation: returning ``not gone`` after that flush lets train() step on
    from NaN to the next log step."""
    import lorasim.engine as engine

    starts = []
    step = engine.Stepper.step

    def watched(self):
        starts.append(bool(torch.isfinite(self.A).all() and torch.isfinite(self.B).all()))
        step(self)

    monkeypatch.setattr(engine.Stepper, "step", watched)
    tr = train(linear, init="spectral", rank=2, solver="precgd", lr=60.0, steps=200, log_every=25, diverge_factor=1e4)
    assert tr.status == "diverged" and all(starts) and len(starts) > tr.diverged_step
    starts.clear()
    trajs = train_batch(linear, [{"init": "spectral", "rank": 2}] * 2, solver="precgd", lr=[60.0, 0.5], steps=200,
                        log_every=25, diverge_factor=1e4)
    assert trajs[0].status == "diverged" and trajs[1].status == "ok" and all(starts)

"""CI asserts the theory: every claim in theory/ at the ci scale, and the lorasim-verify CLI."""
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import lorasim
from lorasim.app import conf_dir
from lorasim.verify import Context, claim_modules, claim_settings, mutation_outcome, run_claim

CLAIMS = list(claim_modules())
# Every (claim, mutation): CI proves each claim can fail (lorasim-verify mutate=true runs the same set).
MUTANTS = [(cid, name) for cid, mod in {**claim_modules(), **claim_modules("p")}.items()
           for name in getattr(mod, "MUTATIONS", {})]


@pytest.fixture(scope="module")
def verify_cfg():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        cfg = compose(config_name="verify")
    GlobalHydra.instance().clear()
    return cfg


@pytest.mark.parametrize("cid", CLAIMS)
def test_claim_holds_at_ci_scale(cid, verify_cfg, tmp_path):
    verdict = run_claim(cid, claim_settings(verify_cfg, cid, "ci"), Context("ci", "cpu", tmp_path))
    if verdict.status == "known failure":
        pytest.xfail(f"{cid}: {verdict.known_failure} (measured {verdict.measured})")
    assert verdict.passed, f"{cid}: predicted {verdict.prediction}; measured {verdict.measured}"


@pytest.mark.parametrize("cid, mutation", MUTANTS)
def test_mutation_is_killed_at_ci_scale(cid, mutation, verify_cfg, tmp_path):
    """The claim FAILs on a pass rule (not by crashing) when its mutation is planted."""
    verdict = run_claim(cid, claim_settings(verify_cfg, cid, "ci"), Context("ci", "cpu", tmp_path), mutation=mutation)
    assert mutation_outcome(verdict) == "killed", f"{cid} {mutation} survived: {verdict.error or verdict.measured}"


def test_every_claim_declares_two_mutations_and_documents_them():
    for cid, mod in {**claim_modules(), **claim_modules("p")}.items():
        mutations = getattr(mod, "MUTATIONS", {})
        assert len(mutations) >= 2, f"{cid} declares {len(mutations)} mutations"
        assert "**Mutations.**" in (mod.__doc__ or ""), f"{cid} lacks a **Mutations.** section"
        for name, m in mutations.items():
            assert m.what and name.isidentifier(), (cid, name)
            assert f"`{name}`" in mod.__doc__, f"{cid}'s docstring does not describe mutation {name}"


def _fake_claim(monkeypatch, run, known_failure=None, mutations=None):
    """C01's module with ``run`` (and KNOWN_FAILURE, MUTATIONS) swapped in."""
    mod = claim_modules()["C01"]
    monkeypatch.setattr(mod, "run", run)
    monkeypatch.setattr(mod, "KNOWN_FAILURE", known_failure, raising=False)
    if mutations is not None:
        monkeypatch.setattr(mod, "MUTATIONS", mutations)
    return mod


def test_an_exception_is_a_fail_even_for_a_known_failure(monkeypatch, tmp_path):
    def broken(settings, ctx):
        raise KeyError("k")
    _fake_claim(monkeypatch, broken, known_failure="a recorded disagreement")
    verdict = run_claim("C01", {}, Context("ci", "cpu", tmp_path))
    assert verdict.status == "FAIL" and verdict.error == "KeyError: 'k'"
    assert mutation_outcome(verdict) == "survived"  # a crash is no rule catching a mutation


def test_mutations_plant_patches_and_flags_and_are_judged_by_the_rules(monkeypatch, tmp_path):
    kit = _theory_module("kit")
    import lorasim

    seen = {}

    def run(settings, ctx):
        checks = kit.Checks()
        seen["flag"] = ctx.mutant("flag")
        seen["risk_below"] = lorasim.risk_below
        checks.add("rule", not (ctx.mutant("flag") or lorasim.risk_below == "patched"))
        return checks.verdict(prediction="p", measured="m")

    _fake_claim(monkeypatch, run, mutations={"flag": kit.Mutation("a flag"),
                                             "patch": kit.Mutation("a patch", kit.patched(lorasim, "risk_below", "patched")),
                                             "noop": kit.Mutation("changes nothing")})
    ctx = Context("ci", "cpu", tmp_path)
    assert run_claim("C01", {}, ctx).passed and seen["flag"] is False
    v = run_claim("C01", {}, ctx, mutation="flag")
    assert mutation_outcome(v) == "killed" and v.failed == ["rule"] and seen["flag"] is True
    v = run_claim("C01", {}, ctx, mutation="patch")
    assert mutation_outcome(v) == "killed" and seen["risk_below"] == "patched"
    assert lorasim.risk_below != "patched"  # the patch is undone after the claim
    assert mutation_outcome(run_claim("C01", {}, ctx, mutation="noop")) == "survived"

    # a mutation that names the rule meant to catch it survives where only another rule fails
    def two_rules(settings, ctx):
        checks = kit.Checks()
        checks.add("(i) first", not ctx.mutant("both") and not ctx.mutant("only_ii"))
        checks.add("(ii) second", not ctx.mutant("both"))
        return checks.verdict(prediction="p", measured="m")
    _fake_claim(monkeypatch, two_rules, mutations={"both": kit.Mutation("both", caught_by=("(i)", "(ii)")),
                                                   "only_ii": kit.Mutation("meant for (ii)", caught_by=("(ii)",))})
    assert mutation_outcome(run_claim("C01", {}, ctx, mutation="both")) == "killed"
    v = run_claim("C01", {}, ctx, mutation="only_ii")
    assert v.failed == ["(i) first"] and v.escaped == ["(ii)"] and mutation_outcome(v) == "survived"

    def typo(settings, ctx):
        ctx.mutant("flgа")
    _fake_claim(monkeypatch, typo, mutations={"flag": kit.Mutation("a flag")})
    v = run_claim("C01", {}, ctx)
    assert v.status == "FAIL" and "not in the claim's MUTATIONS" in v.error


def test_verify_cli_mutate_writes_mutations_csv(tmp_path):
    import pandas as pd

    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", "from lorasim.verify import main; main()"]
    res = subprocess.run(cmd + ["only=[C1]", "mutate=true", f"hydra.run.dir={tmp_path / 'm'}"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    table = pd.read_csv(tmp_path / "m" / "mutations.csv")
    assert list(table.claim.unique()) == ["C01"] and len(table) >= 2 and (table.outcome == "killed").all()
    assert f"{len(table)}/{len(table)} mutations killed" in res.stdout
    bad = subprocess.run(cmd + ["mutate=maybe"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("lorasim: error: mutate='maybe': allowed true or false")
    bad = subprocess.run(cmd + ["draws=-1"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("lorasim: error: draws=-1: allowed an integer from 0")


def test_verify_runs_every_claim_in_its_draw_family(monkeypatch, tmp_path):
    """draws=f: every claim runs inside streams.draws(f), so its teachers are other instances; the report says so."""
    import pandas as pd

    from lorasim import streams, verify

    seen = []

    def record(cid, settings, ctx, mutation=None):
        seen.append((streams._family, ctx.draws, float(lorasim.LinearTeacher(d=8, k=6, r_star=2, n=32, seed=0).G[0, 0])))
        return verify.Verdict(prediction="p", measured="m", passed=True, claim=cid, title="t", result="R")
    monkeypatch.setattr(verify, "run_claim", record)
    for family in (0, 3):
        plan = verify.VerifyPlan(["C01"], {"C01": {}}, "ci", "cpu", True, False, family, "")
        verify._work(plan, tmp_path / str(family))
        header = (tmp_path / str(family) / "report.md").read_text().splitlines()[0]
        assert header.endswith("draw family 3") == (family == 3)
        assert list(pd.read_csv(tmp_path / str(family) / "verdicts.csv")["draws"]) == [family]
    assert [s[:2] for s in seen] == [(0, 0), (3, 3)] and seen[0][2] != seen[1][2] and streams._family == 0


def test_verify_mutate_exits_1_when_a_mutation_survives(monkeypatch, tmp_path, capsys):
    from lorasim import verify

    kit = _theory_module("kit")
    mod = claim_modules()["C01"]
    monkeypatch.setattr(mod, "MUTATIONS", {**mod.MUTATIONS, "noop": kit.Mutation("changes nothing")})
    plan = verify.VerifyPlan(["C01"], {"C01": {"d": 16, "k": 8, "r_star": 2, "n": 64, "seeds": 1}}, "ci", "cpu",
                             True, True, 0, "")
    with pytest.raises(SystemExit) as stop:
        verify._work(plan, tmp_path)
    assert stop.value.code == 1
    out = capsys.readouterr().out
    assert "survived: C01:noop" in out and f"{len(mod.MUTATIONS) - 1}/{len(mod.MUTATIONS)} mutations killed" in out


@pytest.mark.slow
@pytest.mark.parametrize("pid", list(claim_modules("p")))
def test_phase_diagram_completes_at_ci_scale(pid, verify_cfg, tmp_path):
    verdict = run_claim(pid, claim_settings(verify_cfg, pid, "ci"), Context("ci", "cpu", tmp_path))
    assert verdict.passed, f"{pid}: {verdict.measured}"
    assert verdict.figures and (tmp_path / "figures" / verdict.figures[0]).exists()


def test_every_claim_module_documents_itself():
    for cid, mod in {**claim_modules(), **claim_modules("p")}.items():
        doc = mod.__doc__ or ""
        for section in ("**Hypothesis.**", "**Derivation.**", "**Setup.**", "**Measured.**", "**Prediction.**",
                        "**Pass rule.**"):
            assert section in doc, f"{cid} lacks {section}"
        assert mod.TITLE and mod.RESULT


def test_verify_cli_subset_writes_report_and_rejects_unknown_claims(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", "from lorasim.verify import main; main()"]
    res = subprocess.run(cmd + ["only=[C1]", f"hydra.run.dir={tmp_path / 'v'}"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "C01" in res.stdout and "pass" in res.stdout
    assert (tmp_path / "v" / "report.md").read_text().count("## C1") == 1
    assert (tmp_path / "v" / "verdicts.csv").exists()
    bad = subprocess.run(cmd + ["only=[C99]"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("lorasim: error: only=") and "C99" in bad.stderr


def test_lanczos_extremes_match_eigvalsh():
    """theory/numerics.py: the Lanczos path (n > dense_below) gives eigvalsh's extreme eigenvalues, also for
    an operator applied without forming it ((I + UUᵀ)^{1/2} Σ̂ (I + UUᵀ)^{1/2}, as C10 and C13 use it)."""
    import importlib

    import torch

    from lorasim.verify import _theory_package

    numerics = importlib.import_module(_theory_package().__name__ + ".numerics")
    extreme_eigenvalues, sqrt_low_rank_shift, sym_extremes = (
        numerics.extreme_eigenvalues, numerics.sqrt_low_rank_shift, numerics.sym_extremes)

    gen = torch.Generator().manual_seed(0)
    d = 600
    X = torch.randn(4 * d, d, generator=gen, dtype=torch.float64)
    S = X.T @ X / (4 * d)
    ev = torch.linalg.eigvalsh(S)
    lo, hi = sym_extremes(S)
    assert abs(lo / float(ev[0]) - 1) < 1e-12 and abs(hi / float(ev[-1]) - 1) < 1e-12
    U = torch.linalg.qr(torch.randn(d, 3, generator=gen, dtype=torch.float64))[0]
    root = sqrt_low_rank_shift(U, 1.0)
    M = root(S @ root(torch.eye(d, dtype=torch.float64)))
    ref = torch.linalg.eigvalsh(0.5 * (M + M.T))
    lo, hi = extreme_eigenvalues(lambda v: root(S @ root(v)), d)
    assert abs(lo / float(ref[0]) - 1) < 1e-12 and abs(hi / float(ref[-1]) - 1) < 1e-12


def _theory_module(name):
    import importlib

    from lorasim.verify import _theory_package

    return importlib.import_module(f"{_theory_package().__name__}.{name}")


def test_no_claim_imports_another_claim():
    """Claims share code through theory/numerics.py and theory/kit.py only."""
    import ast
    import re
    from pathlib import Path

    from lorasim.verify import _theory_package

    claim = re.compile(r"(^|\.)[cp]\d\d_\w+$")
    for path in sorted(Path(_theory_package().__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(claim.search(n) for n in names), f"{path.name} imports a claim: {names}"


def test_every_claim_settings_dataclass_reads_its_yaml_and_refuses_unknown_keys(tmp_path):
    """Settings has exactly the keys of conf/claims/CNN.yaml (at every scale); a stray or missing key
    is one line naming its override path."""
    import dataclasses
    from pathlib import Path

    from omegaconf import OmegaConf

    from lorasim.config import ConfigError

    parse = _theory_module("kit").parse
    for cid, mod in {**claim_modules(), **claim_modules("p")}.items():
        assert dataclasses.is_dataclass(mod.Settings), cid
        blocks = OmegaConf.to_container(OmegaConf.load(Path(conf_dir()) / "claims" / f"{cid}.yaml"))
        used = set()
        for scale, block in blocks.items():
            ctx = Context(scale, "cpu", tmp_path)
            got = parse(mod.Settings, block, ctx)
            assert all(getattr(got, key) == value for key, value in block.items()), (cid, scale)
            used |= set(block)
            with pytest.raises(ConfigError, match=rf"^claims\.{cid}\.{scale}\.bogus=1: allowed a known key: "):
                parse(mod.Settings, {**block, "bogus": 1}, ctx)
        assert used | {"device", "dtype"} == {f.name for f in dataclasses.fields(mod.Settings)}, cid
        required = next(f.name for f in dataclasses.fields(mod.Settings) if f.default is dataclasses.MISSING)
        with pytest.raises(ConfigError, match=rf"^claims\.{cid}\.ci\.{required}=None: allowed a value"):
            parse(mod.Settings, {k: v for k, v in blocks["ci"].items() if k != required}, Context("ci", "cpu", tmp_path))


def test_a_setting_out_of_range_given_the_others_is_refused_by_verify_in_one_line(tmp_path):
    """A claim's ``Settings.refused`` (C03's fit_window: an integer from 3 to the α ≤ fit_alpha_max; a calibration's
    seeds: at least two) is checked by kit.parse, so lorasim-verify refuses the value before any compute, exit code 2,
    naming the key."""
    cmd = [sys.executable, "-m", "lorasim.verify", "only=[C3]", f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for value in ("3.5", "2", "8"):
        bad = subprocess.run(cmd + [f"+claims.C03.ci.fit_window={value}"], capture_output=True, text=True, env=env,
                             timeout=300)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.strip() == (f"lorasim: error: claims.C03.ci.fit_window={value}: allowed an integer from 3 "
                                      f"to 7 (the α ≤ fit_alpha_max in alphas)")
    import re
    from pathlib import Path

    from omegaconf import OmegaConf

    from lorasim.config import ConfigError

    parse = _theory_module("kit").parse
    ctx = Context("ci", "cpu", tmp_path)
    at_least_two, cal = "an integer ≥ 2", "an integer from 2 to calibration_seeds (40)"
    cases = [("C11", "calibration_seeds", 1, at_least_two), ("C15", "calibration_seeds", 2.5, at_least_two),
             ("C20", "calibration_seeds", 0, at_least_two), ("C20", "calibration_seeds_gd", 41, cal),
             ("C20", "calibration_seeds_gd", 1, cal), ("C03", "fit_window", True, "an integer from 3 to 7")]
    for cid, key, value, allowed in cases:
        block = OmegaConf.to_container(OmegaConf.load(Path(conf_dir()) / "claims" / f"{cid}.yaml"))["ci"]
        with pytest.raises(ConfigError, match=rf"^claims\.{cid}\.ci\.{key}={value!r}: allowed {re.escape(allowed)}"):
            parse(claim_modules()[cid].Settings, {**block, key: value}, ctx)


def test_checks_set_passed_and_carry_the_failure_text():
    Checks = _theory_module("kit").Checks
    checks = Checks()
    assert not checks.passed  # a claim without a rule does not pass
    checks.add("slope", True, "slope 0.8")
    checks.add("floor", False, "floor 1e-20 > 1e-25")
    verdict = checks.verdict(prediction="p", measured="m")
    assert not verdict.passed and verdict.measured == "m; FAILED floor: floor 1e-20 > 1e-25"
    assert "- slope: ok" in verdict.notes and "- floor: **FAIL**: floor 1e-20 > 1e-25" in verdict.notes
    with pytest.raises(ValueError, match="added twice"):
        checks.add("slope", True)
    ok = Checks()
    ok.add("slope", True, "unused")
    assert ok.verdict(prediction="p", measured="m").measured == "m"


def test_context_figure_writes_atomically_and_closes(tmp_path):
    import matplotlib.pyplot as plt

    # other tests in this worker may hold figures of their own: only this test's must be gone
    open_before = set(plt.get_fignums())
    ctx = Context("ci", "cpu", tmp_path)
    with ctx.figure("x.png", ncols=2, figsize=(4, 2)) as (fig, axes):
        axes[0].plot([0, 1], [1, 0])
    assert (tmp_path / "figures" / "x.png").stat().st_size > 0
    with pytest.raises(RuntimeError), ctx.figure("y.png") as (fig, ax):
        raise RuntimeError("drawing failed")
    assert not (tmp_path / "figures" / "y.png").exists()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["x.png"]  # no temp file left behind
    assert set(plt.get_fignums()) == open_before


def test_first_crossing_and_bisect():
    """theory/numerics.py: a threshold's crossing on a grid (P1, P3), refined by bisection."""
    numerics = _theory_module("numerics")
    x = [0.0, 1.0, 2.0]
    at, bracket = numerics.first_crossing(x, [0.0, 0.2, 0.6], 0.4)
    assert at == pytest.approx(1.5) and bracket == (1.0, 2.0)
    assert numerics.first_crossing(x, [0.5, 0.6, 0.7], 0.4) == (-float("inf"), None)  # above at once
    assert numerics.first_crossing(x, [0.0, 0.1, 0.2], 0.4, never=float("inf")) == (float("inf"), None)
    assert numerics.bisect(lambda m: m > 0.3, 0.0, 1.0, 50) == pytest.approx(0.3)


def test_settings_subclass_is_a_keyword_only_dataclass():
    import dataclasses

    kit = _theory_module("kit")

    class Settings(kit.TeacherSettings):
        n: int
        lr: float = 0.5

    assert dataclasses.is_dataclass(Settings)
    assert [f.name for f in dataclasses.fields(Settings)] == ["device", "dtype", "d", "k", "r_star", "seeds", "n", "lr"]
    cfg = Settings(d=8, k=6, r_star=2, seeds=1, n=32)
    assert cfg.lr == 0.5 and cfg.device == "cpu"
    with pytest.raises(TypeError):
        Settings(8, 6, 2, 1, 32)  # keyword-only
    assert cfg.teacher(0, n=32, kappa=1.0).d == 8


def test_verify_dtype_sets_the_teachers_dtype_and_the_verdict_says_so(verify_cfg, tmp_path):
    """dtype= reaches every teacher a claim builds with teacher() unless the claim names its own, and the
    verdict records the dtypes built (verdicts.csv teacher_dtypes): the tf32 table can say which
    claims ran in it. Mutation: an override that never reaches teacher() leaves "float64" here."""
    own = run_claim("C11", claim_settings(verify_cfg, "C11", "ci"), Context("ci", "cpu", tmp_path))
    assert own.teacher_dtypes == "float64"
    settings = {**claim_settings(verify_cfg, "C11", "ci"), "dtype": "float32"}
    got = run_claim("C11", settings, Context("ci", "cpu", tmp_path))
    assert got.teacher_dtypes == "float32" and got.error == ""
    # C13 names its dtypes itself: the override does not replace them
    c13 = run_claim("C13", {**claim_settings(verify_cfg, "C13", "ci"), "dtype": "tf32"}, Context("ci", "cpu", tmp_path))
    assert c13.teacher_dtypes == "float32, float64"


def test_claim_eps_is_the_unit_of_the_teachers_products():
    """cfg.eps, the epsilon a claim's round-off bounds are written with, follows dtype= and the device:
    float64's by default, float32's, and tf32's 2^-10 only where tf32 products run (CUDA). Mutation: a
    kit that ignores dtype= gives 2.2e-16 under float32 and fails here."""
    import numpy as np

    kit = _theory_module("kit")
    TeacherSettings, eps_of = kit.TeacherSettings, kit.eps_of

    shape = dict(d=8, k=6, r_star=2, seeds=1)
    assert TeacherSettings(**shape).eps == np.finfo(np.float64).eps
    assert TeacherSettings(**shape, dtype="float32").eps == np.finfo(np.float32).eps
    assert TeacherSettings(**shape, dtype="tf32").eps == np.finfo(np.float32).eps  # the CPU has no tf32 products
    assert TeacherSettings(**shape, dtype="tf32", device="cuda").eps == 2.0**-10
    assert eps_of("tf32", "cuda:1") == 2.0**-10
    # what the teachers are built and stored in: float32 under tf32, on any device
    assert TeacherSettings(**shape, dtype="tf32", device="cuda").storage_eps == np.finfo(np.float32).eps
    assert TeacherSettings(**shape).storage_eps == np.finfo(np.float64).eps


@pytest.mark.parametrize("cid, rule", [("C08", "identity"), ("C11", "identity"), ("C21", "(a) tangent model"),
                                       ("C10", "(0) reaches ε")])
def test_a_bound_that_reaches_what_it_bounds_fails_as_vacuous(cid, rule, verify_cfg, tmp_path, monkeypatch):
    """The vacuity rules fire. With the claims' units set to tf32's 2^-10 over float32 arithmetic (the CPU has
    no tf32), C08's identity tolerance 100·t·ε reaches 400·max(‖A‖²+‖B‖²), C11's relative τ_R passes 1,
    C21's tangent model is applicable nowhere and C10's risk target 1e-10 lies below the round-off level
    ½(ε‖ΔW‖_F)² ≈ 1e-6: each names the rule as vacuous and the claim FAILs; none passes. Mutation: a vacuity
    branch that adds a passing rule (or none) leaves the claim passing here (C10 without its guard trains, reaches
    ε in float32 and fails other rules, not (0))."""
    kit = _theory_module("kit")
    for unit in ("eps", "storage_eps"):  # C11's bounds are in the storage unit, C08's and C21's in training's
        monkeypatch.setattr(kit.ClaimSettings, unit, property(lambda self: 2.0**-10))
    settings = {**claim_settings(verify_cfg, cid, "ci"), "dtype": "float32"}
    verdict = run_claim(cid, settings, Context("ci", "cpu", tmp_path))
    assert verdict.error == "" and not verdict.passed
    assert rule in verdict.failed and "vacuous" in verdict.measured


def test_c10_undamped_is_killed_where_no_rounding_decides(verify_cfg, tmp_path):
    """C10's `undamped` mutant fails group (d)'s rule (0): from a B0 ≠ 0 whose spare directions are not round-off, a
    PrecGD without λ diverges at step 1 in exact arithmetic. Group (c)'s kill (B0 = 0) rests on how one machine's LAPACK
    rounds a Gram that is singular up to round-off: on the H200 host's CPU (torch 2.11.0) that mutant passed (c)."""
    verdict = run_claim("C10", claim_settings(verify_cfg, "C10", "ci"), Context("ci", "cpu", tmp_path), mutation="undamped")
    assert any(name.startswith("small_random+B0") and name.endswith("reaches ε") for name in verdict.failed), verdict.failed


def test_c03_unaligned_bound_holds_for_haar_pairs_and_fails_an_aligned_init():
    """C03 rule (i): P(a(0) < c) ≤ the false-alarm rate for independent Haar subspaces (checked by Monte Carlo at a
    rate large enough to see, 5 %), and an init drawn inside U(G♮) is far below c."""
    import torch

    bound = claim_modules()["C03"].unaligned_bound
    d, r_star = 32, 2
    c = bound(d, r_star, false_alarm=0.05)
    g = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(4000, d, r_star, generator=g, dtype=torch.float64))[0]
    a0 = (1 - torch.linalg.svdvals(U[:, :r_star, :])[:, -1] ** 2).sqrt()  # U_G = the first r* coordinates
    assert float((a0 < c).double().mean()) <= 0.05 + 3 * (0.05 * 0.95 / 4000) ** 0.5
    assert bound(d, r_star) < c < 1  # a rarer alarm needs a lower threshold
    aligned = torch.eye(d, r_star, dtype=torch.float64) + 0.1 * torch.randn(d, r_star, generator=g, dtype=torch.float64)
    Q = torch.linalg.qr(aligned)[0]
    assert float((1 - torch.linalg.svdvals(Q[:r_star]).min() ** 2).sqrt()) < bound(d, r_star)


def test_c03_law_window_is_the_first_settled_one_or_the_deepest():
    """C03's fit window per seed: the first window of consecutive α over which the law's two orders agree to the width,
    read from the law alone; where none does, the deepest (rule (vi) then fails)."""
    import numpy as np

    window = claim_modules()["C03"]._law_window
    alphas = 10.0 ** -np.arange(5, 13, dtype=float)
    law1 = alphas**0.6
    law2 = law1 * np.exp(np.where(alphas > 3e-7, np.log(alphas / 1e-7) * 0.3, 0.0))  # unsettled at α ≥ 1e-6 only
    no_roundoff = lambda a, law: 0.0  # noqa: E731
    start, step2, _ = window(alphas, law1, law2, 0.6, no_roundoff, 0.01, 4)
    assert (start, step2) == (2, 0.0)  # α = 1e-7 … 1e-10, where the orders coincide
    assert window(alphas, law1, law1, 0.6, no_roundoff, 0.01, 4)[0] == 0
    start, step2, _ = window(alphas, law1, law1 * alphas**-0.1, 0.6, no_roundoff, 0.01, 4)
    assert start == len(alphas) - 4 and step2 > 0.01  # never settles: the deepest window, reported as not settled
    assert window(alphas, law1, law1, 0.6, lambda a, law: 1.0, 0.01, 4)[0] == len(alphas) - 4  # round-off too


def test_c03_seed_whose_law_settles_late_fits_a_deeper_window(verify_cfg, tmp_path, monkeypatch):
    """draws=44, seed 4: at α ≤ 1e−6 twice the second order's step is 0.24, far above the bracket's tenth; the
    window chosen from the law starts at 1e−7 and C03 passes. Fixing every seed's window at the first (the old
    rule) fails the vacuity guard (vi) there."""
    from lorasim import streams

    module = claim_modules()["C03"]
    settings = claim_settings(verify_cfg, "C03", "ci")
    with streams.draws(44):
        verdict = run_claim("C03", settings, Context("ci", "cpu", tmp_path, draws=44))
        assert verdict.passed, verdict.failed
        monkeypatch.setattr(module, "_law_window", lambda *a: (0, float("nan"), float("nan")))
        verdict = run_claim("C03", settings, Context("ci", "cpu", tmp_path, draws=44))
    assert verdict.failed == ["first-order law not vacuous"], verdict.failed


def test_gd_orders_sum_to_gd_order_by_order():
    """numerics.gd_orders (C03's and C06's law) against plain GD in the linear phase: with A0 = α·Z the gap of GD to
    the first m orders, relative to A, is O(α^{2m}), so halving α divides it by ≈ 4, 16 and 64 for m = 1, 2, 3 (a
    wrong sign or a missing cross term in an order leaves that order's gap at the previous one's rate)."""
    import torch

    gd_orders = _theory_module("numerics").gd_orders
    prob = lorasim.LinearTeacher(d=16, k=12, r_star=2, n=64, seed=3)
    Z = torch.randn(16, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eta, steps, gaps = 0.1, 20, []  # ησ_1·steps ≈ 2.5: inside the linear phase at these α
    for alpha in (1e-2, 5e-3):
        A, B = alpha * Z, torch.zeros(4, 12, dtype=torch.float64)
        for _ in range(steps):
            R = prob.sigma_hat @ (A @ B) - prob.G
            A, B = A - eta * R @ B.T, B - eta * A.T @ R
        *_, (_, orders) = gd_orders(prob, alpha * Z, eta, steps)
        gaps.append([float(torch.linalg.matrix_norm(A - sum(o[0] for o in orders[:m])) / torch.linalg.matrix_norm(A))
                     for m in (1, 2, 3)])
    for m, (big, small) in enumerate(zip(*gaps), 1):
        assert 4**m / 2 < big / small < 4**m * 2, (m, gaps)


def test_calibrated_tolerance_fails_an_exact_theory_at_its_stated_rate():
    """kit.calibrated_tolerance (C10, C11, C14, C15, C20): with measured and calibration values from one normal law, |mean| exceeds
    the tolerance at the stated rate (Monte Carlo at 5 %, two- and one-sided); a mean shifted by two SDs is caught."""
    import numpy as np

    tolerance = _theory_module("kit").calibrated_tolerance
    rng = np.random.default_rng(0)  # the test's own draws, not a lorasim stream
    trials, n, k = 4000, 10, 40
    two = one = 0
    for _ in range(trials):
        measured, cal = rng.normal(size=n), rng.normal(size=k)
        two += abs(measured.mean()) > tolerance(cal, n, 0.05)
        one += measured.mean() > tolerance(cal, n, 0.05, sided=1)
    slack = 3 * (0.05 * 0.95 / trials) ** 0.5
    assert abs(two / trials - 0.05) <= slack and abs(one / trials - 0.05) <= slack, (two, one)
    assert 2.0 > tolerance(rng.normal(size=k), n, 1e-3)  # t_{39} ≈ 3.56 SEs of a 10-value mean ≈ 1.1 SDs
    # an unusable calibration (a run that never converged, or fewer than two values) passes nothing
    for bad in ([1.0, float("nan"), 2.0], [1.0, float("inf")], [1.0], []):
        assert np.isnan(tolerance(bad, n, 1e-3)), bad


def test_c21_remainder_majorant_bounds_the_feedback_and_is_nearly_reached():
    """C21 rule (b)'s F: the tangent recursion's ‖B_s(t)‖ stays within q_t of the first order ‖B_s(0) + B_1(t)‖ at
    every step and λ (to round-off), and somewhere it comes within 2× of q_t, so a majorant half as large would be
    exceeded. Mutation: dropping q from p's update (the orders ≥ 3 feeding A_s back) fails the bound. (Dropping a_t's
    projector P_t only loosens it: still a bound, and still within 2× somewhere.)"""
    import numpy as np

    tangent = claim_modules()["C21"]._tangent
    prob = lorasim.LinearTeacher(d=32, k=32, r_star=2, n=512, kappa=4.0, spacing="linear", delta_norm=1.0, seed=11)
    nearest = 0.0
    for lam in (0.1, 0.01, 0.001):
        kw = {"solver": "precgd", "lr": 0.5, "damping": lam, "metrics": "risk", "keep_factors": True}
        spare = lorasim.train(prob, init="spectral", rank=4, steps=1, **kw).factors[0]
        star = lorasim.train(prob, init="spectral", rank=2, steps=60, **kw)
        _, nB, n1, _, q = tangent(prob, star.factors, spare[1][:, 2:], spare[2][2:], 0.5, lam, 2.2e-16)
        gap = np.abs(nB - n1)
        assert (gap <= q * (1 + 1e-9) + 1e-12 * nB).all(), (lam, (gap / np.maximum(q, 1e-300)).max())
        nearest = max(nearest, float((gap[1:] / q[1:]).max()))
    assert nearest > 0.5, nearest


def test_c21_feedback_can_subtract_and_rule_b_holds_there(verify_cfg, tmp_path):
    """draws=48, seed 1, λ = 1e−2: the measured amplification is below the first order (amp/amp1 ≈ 0.997), which
    refuted the old rule "feedback only adds"; the two-sided rule (b), amp = amp1 ± F, holds there."""
    from lorasim import streams

    settings = {**claim_settings(verify_cfg, "C21", "ci"), "seeds": 2, "lambdas": [3.0e-2, 1.0e-2],
                "first_order": [3.0e-2, 1.0e-2]}
    with streams.draws(48):
        verdict = run_claim("C21", settings, Context("ci", "cpu", tmp_path, draws=48))
    runs = verdict.table[verdict.table.kind == "run"].set_index(["seed", "lambda"])
    assert runs.amp_B[(1, 1.0e-2)] < runs.first_order_amp[(1, 1.0e-2)]
    assert not any(name.startswith("(b)") for name in verdict.failed), verdict.failed


def test_c07_slow_mid_run_converges_below_every_lazy_floor(verify_cfg, tmp_path):
    """draws=54, seed 4: the α²_T1 = 1e-2 run sits at the crossover and ends only 1.1e-3 below its seed's lazy floors,
    which the old literal 'three decades' failed; below the floors is what the lazy picture forbids, and it holds."""
    import numpy as np
    from lorasim import streams

    with streams.draws(54):
        verdict = run_claim("C07", claim_settings(verify_cfg, "C07", "ci"), Context("ci", "cpu", tmp_path, draws=54))
    assert verdict.passed, verdict.failed
    tab = verdict.table[verdict.table.variant == "scaled"]
    stable = tab[(tab.alpha2_T1 >= 0.1) & (tab.eta_lam0 < 2)].groupby("seed").lazy_floor.min()
    mid = tab[np.isclose(tab.alpha2_T1, 1e-2)].set_index("seed")
    assert (mid.riskT / stable).max() > 1e-3


@pytest.mark.parametrize("cid, family", [("C06", 80), ("C13", 83)])
def test_a_draw_that_failed_a_literal_passes_the_derived_rule(cid, family, verify_cfg, tmp_path):
    """C06 in draws=80: a run (κ = 4, seed 4) with only 4 steps above the bulk before t*/2 is fitted on its last 5
    steps and follows the law; C13 in draws=83: PrecGD's predicted κ-slope of the window slope exceeds the old literal
    0.05 (F_0's weights), the runs follow the prediction, and the rate is κ-free at the end states."""
    from lorasim import streams

    with streams.draws(family):
        verdict = run_claim(cid, claim_settings(verify_cfg, cid, "ci"), Context("ci", "cpu", tmp_path, draws=family))
    assert verdict.passed, verdict.failed
    if cid == "C06":
        assert verdict.table.window_n.min() == 5
    else:
        assert "vs predicted" in verdict.measured or "pred" in verdict.measured
        precgd = verdict.notes.split("Per-seed log-log slopes")[1]
        assert any(float(line.split()[-2]) > 0.05 for line in precgd.splitlines() if line.strip().startswith("precgd"))

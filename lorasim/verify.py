"""``lorasim-verify``: run the theory claims (theory/cNN_*.py) and report prediction vs measurement.

    lorasim-verify                         # every claim at the ci scale (≤ 5 min on 2 cores)
    lorasim-verify only=[C3,C10]           # a subset
    lorasim-verify scale=paper             # the paper's dimensions
    lorasim-verify scale=large device=cuda # d ≥ 4096, for a GPU
    lorasim-verify device=cuda dtype=tf32  # the teachers in tf32: which claims still pass
    lorasim-verify draws=1                 # every claim on other instances: draw family 1 (lorasim.streams)

Each claim module holds its hypothesis and derivation (the module docstring, Markdown), and a
``run(settings, ctx) -> Verdict``; its settings per scale are conf/claims/CNN.yaml. Both are found,
not listed: a new theory/cNN_*.py with its conf/claims/CNN.yaml is a new claim. The run
prints claim | prediction | measured | pass, writes report.md (derivations, measurements, fits,
figures) and verdicts.csv into the hydra run dir, and exits 1 if any claim fails. A claim whose
failure is a recorded, analysed disagreement with the paper sets KNOWN_FAILURE and is reported as
``known failure`` without failing the run; an exception is a FAIL whatever KNOWN_FAILURE says.

    lorasim-verify mutate=true             # every claim under each of its MUTATIONS: each must FAIL

A claim declares ``MUTATIONS`` (theory/kit.py ``Mutation``): wrong theories or planted bugs that its
pass rule must catch. ``mutate=true`` runs the claim once per mutation, prints ``killed`` (the claim
FAILs on a rule) or ``survived`` (it passes, or it crashed: a crash is no rule catching anything), writes
mutations.csv and exits 0 only if every mutation is killed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import os
import pkgutil
import re
import shutil
import sys
import textwrap
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import hydra
import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from . import job, streams
from .config import check_device, fail
from .io import atomic_write, write_csv
from .job import conf_dir
from .plots import pyplot, save_png

SCALES = ("ci", "paper", "large")
DTYPES = ("float64", "float32", "tf32")


@dataclass
class Verdict:
    prediction: str
    measured: str
    passed: bool
    fits: list = field(default_factory=list)  # Fit objects
    table: Optional[object] = None  # a pandas DataFrame of the per-point measurements
    figures: list = field(default_factory=list)  # file names inside the report folder
    notes: str = ""
    failed: list = field(default_factory=list)  # names of the pass rules that did not hold
    error: str = ""  # the exception that ended the claim, if one did
    escaped: list = field(default_factory=list)  # rules a mutation names in ``caught_by`` that did not fail
    # filled in by the runner
    claim: str = ""
    title: str = ""
    result: str = ""
    known_failure: Optional[str] = None
    wall_s: float = 0.0
    teacher_dtypes: str = ""  # the dtypes of the teachers it built with kit's teacher(), e.g. "tf32"

    @property
    def status(self) -> str:
        if self.passed:
            return "pass"
        # A crash is never the analysed disagreement that KNOWN_FAILURE records.
        return "known failure" if self.known_failure and not self.error else "FAIL"


@dataclass
class Context:
    scale: str
    device: str
    out_dir: Path
    mutation: Optional[str] = None  # the mutation this run plants (lorasim-verify mutate=true), None: the real code
    draws: int = 0  # the run's draw family (lorasim-verify draws=)
    declared: frozenset = frozenset()  # the running claim's MUTATIONS (set by run_claim)

    def mutant(self, name: str) -> bool:
        """True when this run plants the mutation ``name`` (a flag the claim's measurement code reads)."""
        if name not in self.declared:
            raise ValueError(f"mutation {name!r} is not in the claim's MUTATIONS ({', '.join(sorted(self.declared))})")
        return self.mutation == name

    @contextlib.contextmanager
    def figure(self, name: str, dpi: int = 110, **subplots):
        """``with ctx.figure("c09_x.png", figsize=(6, 4)) as (fig, ax):`` a claim's matplotlib figure
        (``plt.subplots(**subplots)``), laid out and written atomically to figures/<name> on exit, then closed."""
        fig, axes = pyplot().subplots(**subplots)
        try:
            yield fig, axes
            fig.tight_layout()
            save_png(fig, self.out_dir / "figures" / name, dpi)
        finally:
            pyplot().close(fig)


def claim_modules(kind: str = "c") -> dict:
    """Claim id ("C01") → module, discovered from lorasim.theory (the theory/ folder).

    ``kind="p"`` lists the phase diagrams (pNN_*.py, ids "P01"): measurements where the paper's
    theory is silent. They run only when named in ``only``.
    """
    theory = _theory_package()
    found = {}
    for info in pkgutil.iter_modules(theory.__path__):
        m = re.fullmatch(rf"{kind}(\d\d)_\w+", info.name)
        if m:
            found[f"{kind.upper()}{m.group(1)}"] = importlib.import_module(f"{theory.__name__}.{info.name}")
    return dict(sorted(found.items()))


def all_modules() -> dict:
    return {**claim_modules("c"), **claim_modules("p")}


def _theory_package():
    try:
        return importlib.import_module("lorasim.theory")  # installed: theory/ ships as lorasim.theory
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent  # source checkout: theory/ beside lorasim/
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return importlib.import_module("theory")


def normalize_ids(only, known) -> list:
    items = [only] if isinstance(only, (str, int)) else list(only)
    ids = []
    for item in items:
        m = re.fullmatch(r"([CcPp]?)(\d{1,2})", str(item).strip())
        cid = f"{(m.group(1) or 'C').upper()}{int(m.group(2)):02d}" if m else str(item)
        if cid not in known:
            fail("", "only", item, "claim ids among " + ", ".join(known))
        ids.append(cid)
    return ids


def run_claim(cid: str, settings: dict, ctx: Context, mutation: Optional[str] = None) -> Verdict:
    """Run claim ``cid`` (under its mutation ``mutation``: the mutation's patch applied and
    ``ctx.mutant(mutation)`` true) and return its verdict; an exception is a FAIL verdict."""
    mod = all_modules()[cid]
    mutations = getattr(mod, "MUTATIONS", {})
    if mutation is not None and mutation not in mutations:
        fail("", "mutation", mutation, f"one of {cid}'s MUTATIONS: " + ", ".join(mutations))
    ctx = dataclasses.replace(ctx, mutation=mutation, declared=frozenset(mutations))
    patch = mutations[mutation].patch if mutation is not None else None
    built = importlib.import_module(_theory_package().__name__ + ".kit").TEACHER_DTYPES
    built.clear()
    start = time.perf_counter()
    try:
        with (patch() if patch is not None else contextlib.nullcontext()):
            verdict = mod.run(settings, ctx)
    except Exception as err:  # one broken claim is a FAIL in the report, not the end of the run
        traceback.print_exc()
        error = f"{type(err).__name__}: {err}".splitlines()[0]
        verdict = Verdict(prediction="(not reached)", measured=f"error: {error}", passed=False, error=error)
    verdict.wall_s = time.perf_counter() - start
    if mutation is not None:
        verdict.escaped = [rule for rule in getattr(mutations[mutation], "caught_by", ())
                           if not any(name.startswith(rule) for name in verdict.failed)]
    verdict.claim, verdict.title, verdict.result = cid, mod.TITLE, mod.RESULT
    verdict.known_failure = getattr(mod, "KNOWN_FAILURE", None)
    verdict.teacher_dtypes = ", ".join(sorted(built))
    return verdict


def claim_settings(cfg: DictConfig, cid: str, scale: str) -> dict:
    """The claim's settings at ``scale``: its conf/claims/CNN.yaml block, with the run's
    ``+claims.CNN.<scale>.<key>=...`` overrides on top."""
    path = Path(conf_dir()) / "claims" / f"{cid}.yaml"
    node = OmegaConf.load(path) if path.is_file() else OmegaConf.create({})
    if scale not in node:
        fail("", "scale", scale, f"a scale that conf/claims/{cid}.yaml defines")
    given = OmegaConf.select(cfg, f"claims.{cid}.{scale}", default=None)
    return OmegaConf.to_container(OmegaConf.merge(node[scale], given or {}), resolve=True)


def terminal_width() -> int:
    """$COLUMNS if set, else the terminal's width, else 100 (output to a file or a pipe)."""
    cols = os.environ.get("COLUMNS", "")
    if (cols.isdigit() and int(cols) > 0) or sys.stdout.isatty():  # shutil reads $COLUMNS first
        return shutil.get_terminal_size((100, 24)).columns
    return 100


def clip(text, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with a trailing …"""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def summary_table(verdicts, width: Optional[int] = None) -> str:
    """claim | prediction | measured | pass, each line cut to ``width`` (the terminal's); the full
    text is in report.md."""
    width = width or terminal_width()
    head = {"claim": "claim", "prediction": "prediction", "measured": "measured", "pass": "pass"}
    rows = [head] + [{"claim": v.claim, "prediction": " ".join(str(v.prediction).split()),
                      "measured": " ".join(str(v.measured).split()), "pass": v.status} for v in verdicts]
    claim_w = max(len(r["claim"]) for r in rows)
    pass_w = max(len(r["pass"]) for r in rows)
    free = max(20, width - claim_w - pass_w - 6)  # three gaps of two spaces
    pred_need = max(len(r["prediction"]) for r in rows)
    meas_need = max(len(r["measured"]) for r in rows)
    if pred_need + meas_need <= free:
        pred_w, meas_w = pred_need, meas_need
    else:  # the measurement gets the larger share, the prediction at least 2/5 (or what it needs)
        pred_w = min(pred_need, max(free * 2 // 5, free - meas_need))
        meas_w = free - pred_w
    cut = pred_need > pred_w or meas_need > meas_w
    lines = [f"{r['claim']:<{claim_w}}  {clip(r['prediction'], pred_w):<{pred_w}}  "
             f"{clip(r['measured'], meas_w):<{meas_w}}  {r['pass']}" for r in rows]
    if cut:
        lines.append(clip(f"(cut to {width} columns; the full text is in report.md)", width))
    return "\n".join(lines)


def write_report(verdicts, ctx: Context, cfg_text: str) -> Path:
    """report.md: the summary, then per claim its derivation, measurements, fits and figures."""
    mods = all_modules()
    lines = [f"# lorasim-verify report — scale `{ctx.scale}`, device `{ctx.device}`"
             + (f", draw family {ctx.draws}" if ctx.draws else ""), "",
             "| claim | result | prediction | measured | status | s |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v.claim} {v.title} | {v.result} | {v.prediction} | {v.measured} | {v.status} | {v.wall_s:.1f} |")
    for v in verdicts:
        lines += ["", "---", "", inspect.cleandoc(mods[v.claim].__doc__ or ""), "",
                  f"### Measured at scale `{ctx.scale}`", "", f"- prediction: {v.prediction}",
                  f"- measured: {v.measured}", f"- status: **{v.status}**"]
        if v.known_failure:
            lines.append(f"- known failure: {v.known_failure}")
        if v.teacher_dtypes:
            lines.append(f"- teachers built in: {v.teacher_dtypes}")
        for fit in v.fits:
            lines.append(f"- fit: {fit.describe()}; residuals {[f'{r:.3g}' for r in fit.residuals]}")
        if v.notes:
            lines += ["", v.notes]
        if v.table is not None and len(v.table):
            lines += ["", v.table.to_markdown(index=False, floatfmt=".4g") if job.installed("tabulate")
                      else "```\n" + v.table.to_string(index=False) + "\n```"]
        for fig in v.figures:
            lines += ["", f"![{v.claim}](figures/{fig})"]
    lines += ["", "## Config", "", "```yaml", cfg_text, "```", ""]
    path = ctx.out_dir / "report.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines)))
    flat = pd.DataFrame([{"claim": v.claim, "title": v.title, "result": v.result, "prediction": v.prediction,
                          "measured": v.measured, "status": v.status, "wall_s": v.wall_s,
                          "teacher_dtypes": v.teacher_dtypes, "draws": ctx.draws,
                          "fits": "; ".join(f.describe() for f in v.fits)} for v in verdicts])
    write_csv(flat, ctx.out_dir / "verdicts.csv")
    return path


@dataclass
class VerifyPlan:
    """A validated lorasim-verify run: which claims, each one's settings, where."""

    ids: list
    settings: dict  # claim id -> its settings at the scale
    scale: str
    device: str
    quiet: bool
    mutate: bool  # run each claim under each of its MUTATIONS instead
    draws: int  # the draw family of every stream (lorasim.streams.draws; 0: the default instances)
    config_text: str  # the run's config, each claim's settings included, for report.md


def validate(cfg: DictConfig) -> VerifyPlan:
    if cfg.scale not in SCALES:
        fail("", "scale", cfg.scale, "one of " + ", ".join(SCALES))
    if not isinstance(cfg.mutate, bool):
        fail("", "mutate", cfg.mutate, "true or false")
    if not streams.is_family(cfg.draws):
        fail("", "draws", cfg.draws, "an integer from 0 (the default instances) to 2**32 − 1")
    dev = check_device("", cfg.device)
    if cfg.dtype is not None and cfg.dtype not in DTYPES:
        fail("", "dtype", cfg.dtype, "null (each claim's own), " + ", ".join(DTYPES))
    only = OmegaConf.to_container(cfg.only) if isinstance(cfg.only, ListConfig) else cfg.only
    known = all_modules()
    ids = list(claim_modules()) if only is None else normalize_ids(only, list(known))
    for cid, node in (cfg.claims or {}).items():
        if not isinstance(node, DictConfig):
            fail("claims", cid, node, "a mapping <scale>: {<key>: <value>}")
        if cid not in known:
            fail("claims", cid, OmegaConf.to_container(node), "a claim id among " + ", ".join(known))
        for scale in node:
            if scale not in SCALES:
                fail(f"claims.{cid}", scale, OmegaConf.to_container(node)[scale], "one of " + ", ".join(SCALES))
    settings = {}
    for cid in ids:
        settings[cid] = claim_settings(cfg, cid, cfg.scale)
        settings[cid].setdefault("device", dev)
        if cfg.dtype is not None:
            settings[cid].setdefault("dtype", cfg.dtype)
        fields = getattr(known[cid], "Settings", None)  # a claim's settings dataclass names its keys
        if fields is not None:
            kit = importlib.import_module(_theory_package().__name__ + ".kit")
            kit.parse(fields, settings[cid], Context(cfg.scale, dev, Path()))
    text = OmegaConf.to_yaml({**OmegaConf.to_container(cfg), "claims": {c: {cfg.scale: settings[c]} for c in ids}})
    return VerifyPlan(ids, settings, cfg.scale, dev, bool(cfg.quiet), cfg.mutate, cfg.draws, text)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="verify")
def _hydra_main(cfg: DictConfig) -> None:
    job.run_job(cfg, validate, _work, prog="lorasim-verify")


def _work(plan: VerifyPlan, out_dir: Path) -> str:
    with streams.draws(plan.draws):
        return _run_all(plan, Context(scale=plan.scale, device=plan.device, out_dir=out_dir, draws=plan.draws))


def _run_all(plan: VerifyPlan, ctx: Context) -> str:
    if plan.mutate:
        return _mutate(plan, ctx)
    verdicts = []
    for cid in plan.ids:
        v = run_claim(cid, dict(plan.settings[cid]), ctx)
        verdicts.append(v)
        if not plan.quiet:
            line = f"{cid} {v.status:>13}  {v.wall_s:6.1f} s  "
            print(line + clip(v.measured, max(10, terminal_width() - len(line))), flush=True)
        # Rewritten after every claim, so a run stopped by a time limit keeps what it measured.
        report = write_report(verdicts, ctx, plan.config_text)
    text = f"{summary_table(verdicts)}\nreport: {report}"
    if any(v.status == "FAIL" for v in verdicts):
        print(text)
        sys.exit(1)  # the run fails with any claim (CI asserts the set)
    return text


def mutation_outcome(verdict: Verdict) -> str:
    """``killed`` when a pass rule caught the mutation (every rule its ``caught_by`` names among them); ``survived``
    when the claim passed or crashed, or a rule meant to catch it passed."""
    caught = not verdict.passed and not verdict.error and verdict.failed and not verdict.escaped
    return "killed" if caught else "survived"


def _mutate(plan: VerifyPlan, ctx: Context) -> str:
    """Every claim under each of its mutations: one line each, mutations.csv, exit 1 if one survives."""
    rows, mods = [], all_modules()
    for cid in plan.ids:
        mutations, first = getattr(mods[cid], "MUTATIONS", {}), len(rows)
        if len(mutations) < 2:
            rows.append({"claim": cid, "mutation": "(none)", "what": f"{len(mutations)} declared, at least 2 needed",
                         "outcome": "survived", "failed": "", "wall_s": 0.0})
        for name, mutation in mutations.items():
            v = run_claim(cid, dict(plan.settings[cid]), ctx, mutation=name)
            rows.append({"claim": cid, "mutation": name, "what": mutation.what, "outcome": mutation_outcome(v),
                         "failed": v.error or "; ".join(v.failed) + "".join(f"; {rule} passed" for rule in v.escaped),
                         "wall_s": round(v.wall_s, 2)})
        for row in rows[first:]:
            if not plan.quiet:
                line = f"{row['claim']}  {row['mutation']:<22} {row['outcome']:>8}  {row['wall_s']:6.1f} s  "
                print(line + clip(row["failed"] or row["what"], max(10, terminal_width() - len(line))), flush=True)
        write_csv(pd.DataFrame(rows), ctx.out_dir / "mutations.csv")  # after every claim, like report.md
    survived = [f"{r['claim']}:{r['mutation']}" for r in rows if r["outcome"] != "killed"]
    text = (f"{len(rows) - len(survived)}/{len(rows)} mutations killed"
            + (f"; survived: {', '.join(survived)}" if survived else "") + f"\nmutations: {ctx.out_dir / 'mutations.csv'}")
    if survived:
        print(text)
        sys.exit(1)
    return text


def help_text() -> str:
    """``lorasim-verify --help``."""
    titles = []
    for path in sorted((Path(conf_dir()) / "claims").glob("*.yaml")):  # a claim's title: its first line
        first = path.read_text().splitlines()[:1]
        title = first[0].lstrip("# ").split(":", 1)[-1].strip() if first and first[0].startswith("#") else ""
        titles.append(clip(f"{path.stem}  {title}", 98))
    rows = [("only=[C3,C10]", "claims to run; default every Cnn (the phase diagrams Pnn only when named)", ""),
            ("scale=ci", "ci (default, <= 5 min on 2 cores), paper (the paper's sizes), large (GPU)", ""),
            ("device=cpu", "cpu, cuda or cuda:N", ""),
            ("dtype=tf32", "float64, float32 or tf32: the teachers' dtype in every claim that builds them with "
                           "teacher() (verdicts.csv: teacher_dtypes); default each claim's own", ""),
            ("quiet=true", "no line per claim while running", ""),
            ("mutate=true", "run each claim under each of its MUTATIONS; exit 0 only if every one FAILs", ""),
            ("draws=1", "the draw family of every random stream: other instances than the default 0's", ""),
            ("+claims.C03.ci.<k>=v", "one claim's setting at one scale (conf/claims/CNN.yaml)", "")]
    return "\n".join([
        "lorasim-verify: run the theory's claims (theory/cNN_*.py) and report prediction vs measurement.",
        "Prints claim | prediction | measured | pass (cut to the terminal), writes report.md (derivations,",
        "measurements, fits, figures) and verdicts.csv into the run folder, and exits 1 if a claim fails.",
        "",
        "Usage:  lorasim-verify [key=value ...]",
        "",
        "Settings:",
        job.wrap_help(rows),
        "",
        "Claims (conf/claims/; theory/README.md indexes them):",
        textwrap.indent("\n".join(titles), "  "),
        "",
        "Examples:",
        "  lorasim-verify                           every claim C01-C21 at the ci scale (the set CI asserts)",
        "  lorasim-verify only=[C3,C10]             a subset",
        "  lorasim-verify only=[P1] scale=paper     a phase diagram, where the theory is silent",
        "  lorasim-verify scale=large device=cuda   d >= 4096 on a GPU",
        "  lorasim-verify mutate=true               prove each claim can fail (mutations.csv)",
    ])


def unknown_key_hint(given: str, key: str, cfg) -> Optional[str]:
    """A claim's setting given without ``+``: ``claims`` starts empty (each claim's settings are its yaml's), so
    the key must be added. The generic line named the keys of whatever other overrides had put there."""
    parts = key.split(".")
    if parts[0] != "claims" or given.startswith("+"):
        return None
    head = f"{given}: unknown key; a claim's setting is added with +, as +claims"
    known = all_modules()
    if len(parts) < 2 or parts[1] not in known:
        return f"{head}.<claim>.<scale>.<key>=value, <claim> one of {', '.join(known)}"
    if len(parts) < 4 or parts[2] not in SCALES:
        return f"{head}.{parts[1]}.<scale>.<key>=value, <scale> one of {', '.join(SCALES)}"
    keys = claim_settings(OmegaConf.create({}), parts[1], parts[2])
    return f"{head}{given[len('claims'):]}; the keys at {parts[2]}: {', '.join(keys)}"


def main() -> None:
    """Console entry point ``lorasim-verify``."""
    job.main(_hydra_main, help_text, validate, "verify", prog="lorasim-verify", hint=unknown_key_hint)


if __name__ == "__main__":
    main()

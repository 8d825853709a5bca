"""The same runs on CUDA and on CPU agree (skipped without a GPU)."""
import numpy as np
import pandas as pd
import pytest
import torch

import lorasim

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _arrays(seed=0, n=400, d=40, k=30, r=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W0 = rng.standard_normal((d, k))
    delta = rng.standard_normal((d, r)) @ rng.standard_normal((r, k)) / 4
    return X, X @ (W0 + delta), W0, delta


@pytest.mark.parametrize("init, solver, lr", [("spectral", "precgd", 0.5), ("small_random", "gd", 0.1),
                                              ("lora_one", "scaled_adam", 1e-2)])
def test_cuda_trajectory_matches_cpu(init, solver, lr):
    arrays = _arrays()
    frames = {}
    for device in ("cpu", "cuda"):
        prob = lorasim.LinearTeacher.from_arrays(*arrays, device=device)
        # rank = r* = 3: an over-rank spectral init carries √(round-off) columns that differ by device.
        traj = lorasim.train(prob, init=init, rank=3, solver=solver, lr=lr, steps=60, log_every=5)
        assert traj.A.device.type == device
        frames[device] = traj.to_frame()
    for col in ["risk", "loss", "err_fro", "align_A_star"]:
        cpu, gpu = frames["cpu"][col].to_numpy(), frames["cuda"][col].to_numpy()
        floor = 1e-12 * abs(cpu[0])
        np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=floor, err_msg=f"{col}: cpu {cpu} cuda {gpu}")


def test_problems_generate_on_cuda():
    for prob in (lorasim.LinearTeacher(d=64, k=48, r_star=2, n=512, device="cuda"),
                 lorasim.ReLUTeacher(device="cuda"), lorasim.MatrixSensing(n1=20, n2=20, r_star=2, device="cuda")):
        traj = lorasim.train(prob, init="spectral", rank=2, solver="precgd", lr=0.5, steps=20, log_every=10)
        assert traj.status == "ok" and prob.G.is_cuda and traj.A.is_cuda


@pytest.mark.parametrize("solver, kw", [("gd", {}), ("precgd", {"damping": 1e-3}), ("scaled_adam", {})])
def test_cuda_float32_batch_with_graphs_matches_cpu_float64(solver, kw):
    """Batched float32 runs on CUDA (fused G pass, CUDA graphs) follow the float64 CPU runs as closely as
    float32 runs on the CPU do.

    The float32 arithmetic itself moves a trajectory by far more than ε32: a PrecGD step solves with a
    damped Gram of condition up to ≈ 5e3 here (relative error κ·ε32 per step), and near the solution the
    risk cancels. So the tolerance is the CPU float32 run's own deviation from float64 (an oracle that
    does not read the CUDA run), ×4 for a different rounding order, plus the round-off of one float32
    reduction over the d·k entries, √(dk)·ε32 of the column's largest reference value (random rounding;
    GPU reductions sum in another order than the CPU's: at t = 0 the H200 was 2e-6 relative off)."""
    arrays = _arrays(d=200, k=150, n=3000)
    # rank = r*: over-rank spare directions amplify round-off under PrecGD (C12/C21).
    inits = [{"init": "small_random", "rank": 3, "seed": s, "alpha": 1e-2} for s in range(3)] + [
        {"init": "spectral", "rank": 3}]
    cpu = lorasim.LinearTeacher.from_arrays(*arrays, r_star=3)
    cpu32 = lorasim.LinearTeacher.from_arrays(*arrays, r_star=3, dtype="float32")
    # The oracle's step takes torch's float32 CPU products, as when this tolerance was set: numpy's BLAS (the
    # default CPU step since) landed 10× closer to float64 at step 8 of the precgd small_random run (0.0069
    # against the H200's 0.071), one draw of the rounding walk, not a measure of its spread.
    cpu32.fused = False
    gpu = lorasim.LinearTeacher.from_arrays(*arrays, r_star=3, dtype="float32", device="cuda")
    sigma1 = cpu.describe()["sigma1_G"]
    lrs = [c / sigma1 for c in (0.05, 0.1, 0.1, 0.3)] if solver == "gd" else [0.05, 0.1, 0.1, 0.3]
    ref = lorasim.train_batch(cpu, inits, solver=solver, lr=lrs, steps=24, log_every=8, **kw)
    f32 = lorasim.train_batch(cpu32, inits, solver=solver, lr=lrs, steps=24, log_every=8, **kw)
    got = lorasim.train_batch(gpu, inits, solver=solver, lr=lrs, steps=24, log_every=8, graphs="on", **kw)
    for r, c, g in zip(ref, f32, got):
        assert g.status == r.status == "ok" and g.graph_error is None
        for col in ["risk", "err_fro", "align_A_star"]:
            want, cpu_dev = r.to_frame()[col].to_numpy(), np.abs(c.to_frame()[col].to_numpy() - r.to_frame()[col].to_numpy())
            have = g.to_frame()[col].to_numpy()
            floor = np.sqrt(cpu.d * cpu.k) * np.finfo(np.float32).eps / 2 * np.abs(want).max()
            np.testing.assert_array_less(np.abs(have - want), 4 * cpu_dev + floor,
                                         err_msg=f"{solver} {r.init} {col}: cuda {have}, cpu64 {want}, cpu32 dev {cpu_dev}")


def test_cuda_graphs_replay_exactly_what_eager_runs():
    prob = lorasim.LinearTeacher(d=256, k=192, r_star=4, n=2048, dtype="float32", device="cuda")
    inits = [{"init": "small_random", "rank": 8, "seed": s} for s in range(4)]
    a = lorasim.train_batch(prob, inits, solver="precgd", lr=0.2, steps=30, log_every=10, graphs="on")
    b = lorasim.train_batch(prob, inits, solver="precgd", lr=0.2, steps=30, log_every=10, graphs="off")
    for x, y in zip(a, b):
        assert torch.equal(x.A, y.A) and torch.equal(x.B, y.B)


@pytest.mark.skipif(lorasim.kernels.triton is None, reason="needs Triton")
@pytest.mark.parametrize("noise", [0.0, 0.3])  # the teacher's step (G not read), and the G pass's
def test_gd_descends_inside_the_gradient_kernel_as_close_to_float64_as_the_solver_step(noise, monkeypatch):
    """On CUDA, plain GD's step is taken inside kernels.assemble (LinearTeacher.descend): every step goes through it,
    and the batch follows the float64 CPU runs as closely as the same CUDA batch with the solver's own update does.
    Tolerance as in test_cuda_float32_batch_with_graphs_matches_cpu_float64, with the solver-update CUDA run as the
    oracle (it does not read the fused run): 4× its deviation (another rounding order: the gradient is not rounded
    to float32 before the step, and the step is one fused multiply-add) plus one float32 reduction over d·k.
    Mutations (also killed in tests/test_batch.py's interpreter script): no step size, the wrong rows."""
    X, Y, W0, delta = _arrays(d=200, k=150, n=3000)
    Y = Y + noise * np.random.default_rng(1).standard_normal(Y.shape)
    inits = [{"init": "small_random", "rank": 3, "seed": s, "alpha": 1e-2} for s in range(3)] + [
        {"init": "spectral", "rank": 3}]
    cpu = lorasim.LinearTeacher.from_arrays(X, Y, W0, delta, r_star=3)
    gpu = lorasim.LinearTeacher.from_arrays(X, Y, W0, delta, r_star=3, dtype="float32", device="cuda")
    assert (gpu.teacher_factors() is None) == (noise > 0)
    sigma1 = cpu.describe()["sigma1_G"]
    lrs = [c / sigma1 for c in (0.05, 0.1, 0.1, 0.3)]
    ref = lorasim.train_batch(cpu, inits, solver="gd", lr=lrs, steps=24, log_every=8)
    cls, calls = type(gpu), []
    real = cls.descend

    def counting(self, *args):
        calls.append(real(self, *args))
        return calls[-1]
    monkeypatch.setattr(cls, "descend", counting)
    fused = lorasim.train_batch(gpu, inits, solver="gd", lr=lrs, steps=24, log_every=8, graphs="on")
    assert calls and all(calls), calls
    monkeypatch.setattr(cls, "descend", lambda self, *args: False)
    plain = lorasim.train_batch(gpu, inits, solver="gd", lr=lrs, steps=24, log_every=8, graphs="on")
    for r, f, p in zip(ref, fused, plain):
        assert f.status == p.status == r.status == "ok" and f.graph_error is None
        for col in ["risk", "err_fro", "align_A_star"]:
            want = r.to_frame()[col].to_numpy()
            have, base = f.to_frame()[col].to_numpy(), p.to_frame()[col].to_numpy()
            floor = np.sqrt(cpu.d * cpu.k) * np.finfo(np.float32).eps / 2 * np.abs(want).max()
            np.testing.assert_array_less(np.abs(have - want), 4 * np.abs(base - want) + floor,
                                         err_msg=f"{r.init} {col}: fused {have}, cpu64 {want}, solver step {base}")


@pytest.mark.skipif(lorasim.kernels.triton is None, reason="needs Triton")
@pytest.mark.parametrize("shape, width", [((4096, 3000), 16), ((1000, 777), 5), ((2048, 2048), 64)])
@pytest.mark.parametrize("precision, tol, split", [("ieee", 1e-6, "triton"), ("tf32x3", 1e-5, "triton"),
                                                   ("tf32x3", 1e-5, "hoisted"), ("tf32", 3e-3, "triton")])
def test_fused_pass_matches_float64_products_and_is_deterministic(shape, width, precision, tol, split):
    """The hoisted split's tolerance is tf32x3's: its terms lose up to 2^-22 of each operand (lo cut to tf32 inside
    the tensor cores), like Triton's split; a split whose low parts are lost (a wrong mask) is one tf32 pass, 1e-3
    off."""
    g = torch.Generator(device="cuda").manual_seed(width)
    M = torch.randn(*shape, generator=g, device="cuda")
    R = torch.randn(shape[1], width, generator=g, device="cuda")
    L = torch.randn(shape[0], width, generator=g, device="cuda")
    MR, LM = lorasim.kernels.skinny_products(M, R, L, precision=precision, split=split)
    ref_r, ref_l = M.double() @ R.double(), L.double().T @ M.double()
    assert float((MR.double() - ref_r).norm() / ref_r.norm()) < tol
    assert float((LM.double() - ref_l).norm() / ref_l.norm()) < tol
    MR2, LM2 = lorasim.kernels.skinny_products(M, R, L, precision=precision, split=split)
    assert torch.equal(MR, MR2) and torch.equal(LM, LM2)


@pytest.mark.skipif(lorasim.kernels.triton is None, reason="needs Triton")
@pytest.mark.parametrize("m", [1000, 1001])
def test_symmetric_partials_reads_the_upper_blocks_on_the_gpu(m):
    """Σ̂A from Σ̂'s upper 2×2 blocks on CUDA: TMA loads of the blocks' views at m = 1000 (rows of 4000 bytes),
    pointer loads at 1001: the product of the upper blocks mirrored, to tf32x3's 1e-5 against float64, and a NaN
    block in the lower left changes no bit (it is never read). Mutations: a TMA box past a view's end (reads the
    neighbouring block), the left product added to the wrong half."""
    g = torch.Generator(device="cuda").manual_seed(m)
    X = torch.randn(m + 3, m, generator=g, device="cuda", dtype=torch.float64)
    S = (X.T @ X / m).float()
    R = torch.randn(m, 16, generator=g, device="cuda")
    h = (m // 2) // lorasim.kernels.SYMMETRIC_SPLIT * lorasim.kernels.SYMMETRIC_SPLIT
    mirrored = S.double().clone()
    mirrored[h:, :h] = mirrored[:h, h:].T
    stack = lorasim.kernels.symmetric_partials(S, R)
    want = mirrored @ R.double()
    assert float((stack.sum(0).double() - want).norm() / want.norm()) < 1e-5
    S[h:, :h] = float("nan")
    assert torch.equal(lorasim.kernels.symmetric_partials(S, R), stack)


@pytest.mark.skipif(lorasim.kernels.triton is None, reason="needs Triton")
@pytest.mark.parametrize("split", ["hoisted", "triton"])
def test_non_finite_operands_reach_the_products_on_the_gpu(split):
    """The compiled pass (TMA loads at 256 × 320) as the interpreter test says for the kernel's split: an inf or a
    NaN in M, R or L makes every product it enters NaN and no other; Triton's split keeps an inf non-finite.
    0x7FFFFFFF and 0xFFFFFFFF are the NaNs whose rounding carries into the sign bit, where a NaN sum of the small
    terms taken as 0 (Triton's rule) gave a finite product. Mutation: that rule in ``_dot3``."""
    from lorasim import kernels
    from non_finite_cases import non_finite_cases  # tests/ (pytest puts it on sys.path)
    g = torch.Generator(device="cuda").manual_seed(17)
    M0, R0, L0 = (torch.randn(*shape, generator=g, device="cuda") for shape in ((256, 320), (320, 16), (256, 16)))
    at = {"M": (130, 77), "R": (77, 5), "L": (130, 9)}
    for pattern, where, M, R, L, bad_mr, bad_lm in non_finite_cases(M0, R0, L0, at):
        kept_inf = split == "triton" and pattern == 0x7F800000
        for two_sided in (True, False):
            MR, LM = kernels.skinny_products(M, R, L if two_sided else None, split=split)
            for out, bad in ((MR, bad_mr), (LM, bad_lm)):
                if out is None:
                    continue
                flagged = ~torch.isfinite(out[bad]) if kept_inf else torch.isnan(out[bad])
                assert flagged.all() and torch.isfinite(out[~bad]).all(), (hex(pattern), where, two_sided)


@pytest.mark.skipif(lorasim.kernels.triton is None, reason="needs Triton")
@pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.mem_get_info()[0] < 12e9, reason="needs 12 GB free")
def test_fused_pass_is_right_past_32_bit_offsets():
    """G at d = k = 46341 (offsets to 2 147 488 280, past 2³¹ − 1): the kernels' 32-bit offset products would
    wrap, so the pass hands over to torch. Only the last row is non-zero, where a wrapped offset lands elsewhere."""
    from lorasim import kernels
    d, w = 46341, 16
    M = torch.zeros(d, d, device="cuda")
    M[-1] = torch.arange(d, device="cuda", dtype=torch.float32) % 7 - 3
    R = torch.ones(d, w, device="cuda")
    L = torch.ones(d, w, device="cuda")
    MR, LMt = kernels.skinny_products(M, R, L)
    assert float(MR[:-1].abs().max()) == 0.0
    assert torch.equal(MR[-1], torch.full((w,), float(M[-1].sum()), device="cuda"))
    assert torch.equal(LMt, M[-1].expand(w, d))


def test_bias_table_finds_rounding_unbiased_and_the_tensor_core_passes_low():
    """What the README and kernels' docstring say of the pass's signed error, kept true: float32 on the FMA
    units (ieee) and cuBLAS round to nearest (|mean| below 2⁻²²/10 at every shape), tf32x3 and tf32 come out
    low (mean below −2⁻²²/10 at 4096², where N = 131072 entries put the mean's sampling sd near 3e-10). A
    Triton or GPU whose tensor cores round would fail here, and the docs would need the new numbers."""
    table = pd.DataFrame(lorasim.kernels.bias_table(torch.device("cuda")))
    assert set(table.precision) == {"ieee", "tf32x3", "tf32x3/triton", "tf32", "cublas"}
    unbiased = table[table.precision.isin(["ieee", "cublas"])]
    assert (unbiased["mean"].abs() < 2.0**-22 / 10).all(), unbiased
    big = table[(table.m == 4096) & table.precision.isin(["tf32x3", "tf32"])]
    assert (big["mean"] < -(2.0**-22) / 10).all(), big
    # The default (hoisted) split truncates per tile as Triton's does (its three products start from zero and join
    # the running sum in float32): its mean is of Triton's split's size. Fed the running sum instead, the bias grows
    # with the sweep (−4.25e-5 at n = 4096, benchmarks.md), 160× Triton's; 4× allows the two splits' different
    # rounding
    for m, g in table[table.precision.str.startswith("tf32x3")].groupby("m"):
        means = g.set_index("precision")["mean"]
        assert abs(means["tf32x3"]) <= 4 * abs(means["tf32x3/triton"]), (m, means)


@pytest.mark.skipif(lorasim.kernels.triton is None, reason="needs Triton")
@pytest.mark.parametrize("b, r", [(1, 16), (3, 5), (4, 24)])
@pytest.mark.parametrize("precision, tol", [("ieee", 1e-6), ("tf32", 3e-3)])
def test_assemble_kernel_matches_float64_in_both_layouts(b, r, precision, tol):
    """out_b = P_b S_b − Q_b for side-by-side blocks: the gradient of A's layout (P, Q row-major, out (b, n, r))
    and of B's (P a transposed view, S transposed, out a transposed view), against float64, alone and both in one
    launch (of another length), and from stacks of partial products. Mutations: a block offset of 0 (every run
    reads run 0), the sign of Q, S's strides ignored, the second job's length taken from the first, or a stack
    read only to its first part fail for b > 1, r × r ≠ sym, 777 ≠ 500 or stacks of 3."""
    g = torch.Generator(device="cuda").manual_seed(b * 100 + r)
    n = 777
    P = torch.randn(n, b * r, generator=g, device="cuda")
    Q = torch.randn(n, b * r, generator=g, device="cuda")
    S = torch.randn(b, r, r, generator=g, device="cuda")  # not symmetric: a transposition shows
    P2, Q2 = (torch.randn(500, b * r, generator=g, device="cuda") for _ in range(2))

    def want_of(P, S, Q):
        return (P.double().unflatten(1, (b, r)).transpose(0, 1) @ S.double()
                - Q.double().unflatten(1, (b, r)).transpose(0, 1))
    want = want_of(P, S, Q)
    out = torch.empty(b, n, r, device="cuda")
    lorasim.kernels.assemble([(P, S, Q, out)], precision)
    assert float((out.double() - want).norm() / want.norm()) < tol
    Pt, Qt = P.T.contiguous().T, Q.T.contiguous().T  # column-major, as Bᵀ's side-by-side view
    outT, out2 = torch.empty(b, r, n, device="cuda").mT, torch.empty(b, 500, r, device="cuda")
    lorasim.kernels.assemble([(Pt, S.mT.contiguous().mT, Qt, outT), (P2, S.mT, Q2, out2)], precision)
    assert float((outT.double() - want).norm() / want.norm()) < tol
    want2 = want_of(P2, S.mT, Q2)
    assert float((out2.double() - want2).norm() / want2.norm()) < tol
    stacked = torch.empty(b, n, r, device="cuda")
    thirds = tuple(torch.stack([M / 2, M / 4, M / 4]) for M in (P, S, Q))  # a part left out is off by ≥ M/4
    lorasim.kernels.assemble([(*thirds, stacked)], precision)
    assert float((stacked.double() - want).norm() / want.norm()) < tol


@pytest.mark.skipif(lorasim.kernels.triton is None, reason="needs Triton")
@pytest.mark.parametrize("b, r, n0, n1", [(1, 16, 4096, 3000), (3, 5, 777, 1200), (64, 16, 2048, 2048)])
@pytest.mark.parametrize("precision, tol", [("ieee", 1e-6), ("tf32", 3e-3)])
def test_grams_kernel_matches_float64(b, r, n0, n1, precision, tol):
    """X_bᵀ Y_b for two pairs in one launch, as the step uses it: B Bᵀ from Bᵀ's column-major side-by-side view
    (n0 rows) and Aᵀ(Σ̂A) from row-major blocks (n1 rows), against float64. Mutations: a block offset of 0 (every
    run reads run 0), one pair's length used for both, or a chunk left out of the sum fail (b > 1; n0 ≠ n1; the
    grid cuts these lengths into several chunks), as does a stack read only to its first part."""
    g = torch.Generator(device="cuda").manual_seed(b * 1000 + r)
    Bt = torch.randn(b * r, n0, generator=g, device="cuda").T
    A, SA = (torch.randn(n1, b * r, generator=g, device="cuda") for _ in range(2))
    SA_parts = torch.stack([SA / 2, SA / 4, SA / 4])  # Σ̂A as a stack of partial products
    got = lorasim.kernels.grams([(Bt, Bt), (A, SA_parts)], r, precision)
    want = lorasim.kernels.grams_reference([(Bt.double(), Bt.double()), (A.double(), SA.double())], r)
    assert got.shape == (2, b, r, r)
    for j in range(2):
        assert float((got[j].double() - want[j]).norm() / want[j].norm()) < tol, j
    assert torch.equal(got, lorasim.kernels.grams([(Bt, Bt), (A, SA_parts)], r, precision))  # no atomics


@pytest.mark.parametrize("lead", [(3,), ()])
def test_float32_gradients_through_the_assemble_kernel_match_float64(lead):
    """A float32 batch (and a single run) on CUDA: the G pass, then kernels.assemble in exact float32; the
    gradients equal float64 products to float32 round-off (4√d·2⁻²³ relative, a dot product of length d)."""
    prob = lorasim.LinearTeacher(d=384, k=256, r_star=4, n=4096, dtype="float32", device="cuda")
    g = torch.Generator(device="cuda").manual_seed(4)
    A = torch.randn(*lead, 384, 8, generator=g, device="cuda")
    B = torch.randn(*lead, 8, 256, generator=g, device="cuda")
    gA, gB = prob.grads(A, B)
    S, G, Ad, Bd = prob.sigma_hat.double(), prob.G.double(), A.double(), B.double()
    want_A = S @ Ad @ (Bd @ Bd.mT) - G @ Bd.mT
    want_B = (Ad.mT @ S @ Ad) @ Bd - Ad.mT @ G
    for have, want in ((gA, want_A), (gB, want_B)):
        assert have.shape == want.shape
        assert float((have.double() - want).norm() / want.norm()) < 4 * 384**0.5 * 2.0**-23


def test_wide_batch_gradients_through_kept_transposed_G_match_float64():
    """A tf32 batch wider than the fused pass (b·r > kernels.MAX_WIDTH) forms Aᵀ G as (Gᵀ A)ᵀ from a kept copy
    of Gᵀ: its gradients equal float64 products to tf32 round-off (4√d·2⁻¹⁰ relative: inputs rounded to
    tf32, a dot product of length d), on a non-square G (a transposition bug is a wrong value or shape), also after G changes (shifted:
    a stale Gᵀ would give the old G's gradient, off by far more)."""
    prob = lorasim.LinearTeacher(d=384, k=256, r_star=4, n=4096, dtype="tf32", device="cuda")
    g = torch.Generator(device="cuda").manual_seed(3)
    A = torch.randn(8, 384, 16, generator=g, device="cuda")  # w = 128 > MAX_WIDTH
    B = torch.randn(8, 16, 256, generator=g, device="cuda")
    assert A.shape[0] * A.shape[-1] > lorasim.kernels.MAX_WIDTH
    tol = 4 * 384**0.5 * 2.0**-10
    assert prob.matmul_precision == "tf32"
    for problem in (prob, prob.shifted(A[0, :, :2].contiguous(), B[0, :2].contiguous())):
        S, G = problem.sigma_hat.double(), problem.G.double()
        with problem.matmul_mode():
            gA, gB = problem.grads(A, B)
        Ad, Bd = A.double(), B.double()
        want_A = S @ Ad @ (Bd @ Bd.mT) - G @ Bd.mT
        want_B = (Ad.mT @ S @ Ad) @ Bd - Ad.mT @ G
        for have, want in ((gA, want_A), (gB, want_B)):
            assert float((have.double() - want).norm() / want.norm()) < tol


def test_tf32_dtype_runs_and_stays_close():
    arrays = _arrays(d=200, k=150, n=3000)
    f32 = lorasim.LinearTeacher.from_arrays(*arrays, r_star=3, dtype="float32", device="cuda")
    t32 = lorasim.LinearTeacher.from_arrays(*arrays, r_star=3, dtype="tf32", device="cuda")
    a = lorasim.train_batch(f32, [{"init": "spectral", "rank": 3}], solver="precgd", lr=0.5, steps=20, log_every=20)
    b = lorasim.train_batch(t32, [{"init": "spectral", "rank": 3}], solver="precgd", lr=0.5, steps=20, log_every=20)
    assert torch.get_float32_matmul_precision() == "highest"  # restored after the run
    ra, rb = a[0].to_frame()["risk"].iloc[-1], b[0].to_frame()["risk"].iloc[-1]
    assert rb < 1e-2 * b[0].to_frame()["risk"].iloc[0] and abs(ra - rb) < 1e-2 * a[0].to_frame()["risk"].iloc[0]


def test_tf32_rows_measure_the_trained_state_in_full_float32():
    """dtype=tf32 trains with tf32 products, but the logged rows measure each kept state in float32's full
    precision: the rows equal the row functions applied to the kept factors at "highest" precision, to
    float32's round-off, not tf32's. Mutation: rows computed inside the training's tf32 mode are off by
    about 2^-10 of the products (far outside 1e-5)."""
    from lorasim.metrics import AlignmentTargets, record_batch

    arrays = _arrays(d=200, k=150, n=3000)
    prob = lorasim.LinearTeacher.from_arrays(*arrays, r_star=3, dtype="tf32", device="cuda")
    tr = lorasim.train(prob, init="small_random", rank=4, solver="gd", lr=0.005, steps=30, log_every=10,
                       keep_factors=True)
    assert tr.status == "ok"
    ref = AlignmentTargets.from_problem(prob, 4)
    As, Bs = torch.stack([A for _, A, _ in tr.factors]), torch.stack([B for _, _, B in tr.factors])
    A0, B0 = As[:1].expand_as(As), Bs[:1].expand_as(Bs)
    # The engine's batch of kept states, here outside training, whose float32 products are "highest".
    with lorasim.engine.capturable_linalg(As.device):  # the engine's linear-algebra library (cuSOLVER), too
        wants = record_batch(prob, ref, As, Bs, A0, B0, 4)
    for row, want, (t, _, _) in zip(tr.rows, wants, tr.factors):
        for col in ("loss", "risk", "err_fro", "align_A", "sv_A_1"):
            assert row[col] == pytest.approx(want[col], rel=1e-5, abs=1e-6), (t, col)


@pytest.mark.parametrize("method", ["lora_one", "lora_one_prec", "lora"])
def test_llm_run_on_cuda_matches_cpu(method):
    """The LLM stage on the tiny Llama: the same run (init, optimizer, angles) on both devices."""
    pytest.importorskip("peft")
    from lorasim.llm.methods import MethodConfig
    from lorasim.llm.train import LLMRunConfig, run

    torch.backends.cuda.matmul.allow_tf32 = False
    task = {"name": "synthetic_topics", "eval_per_class": 2, "train_per_class": 8, "max_text_tokens": 16}
    out = {}
    for device in ("cpu", "cuda"):
        spec = LLMRunConfig(steps=6, batch_size=4, init_batches=2, log_every=2, eval_every=3, angle_every=3, device=device)
        out[device] = run("tiny_llama", task, MethodConfig(name=method, r=2, lr=1e-2), spec, seed=0)
    for a, b in zip(out["cpu"]["curve"], out["cuda"]["curve"]):
        for col in ("train_loss", "val_loss", "test_loss"):
            assert (np.isnan(a[col]) and np.isnan(b[col])) or abs(a[col] - b[col]) <= 1e-4 * abs(a[col]), (col, a, b)
    # "full" is NaN where ΔW has rank < r on both devices (vanilla LoRA's B0 = 0 at t = 0, since issue 16)
    for a, b in zip(out["cpu"]["angles"], out["cuda"]["angles"]):
        assert (np.isnan(a["full"]) and np.isnan(b["full"])) or abs(a["full"] - b["full"]) < 1e-3, (a, b)
    assert any(np.isfinite(a["full"]) for a in out["cpu"]["angles"])


# -- the LLM init on the device (issue 15) ---------------------------------------------------------
def _llm_batches(device, n=3):
    g = torch.Generator().manual_seed(3)
    return [{"input_ids": (ids := torch.randint(0, 259, (2, 12), generator=g).to(device)), "labels": ids}
            for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_llm_offload_is_the_synchronous_sum_bit_for_bit(dtype):
    """The same device gradients, summed through the side stream, pinned slots and worker thread, and
    synchronously: each element gets the same fp32 adds in the same order, so the bits agree. (Two
    backward passes on the GPU need not agree bitwise, so the gradients are fed, not recomputed.)
    Each gradient is produced behind a ~10 ms spin on the compute stream, so a copy that did not wait
    for it (no wait_stream), memory reused before the copy (no record_stream) or an add before the
    copy landed (no event) would read unfinished data."""
    from lorasim.llm.gradient import OFFLOAD_SLOTS, _Offload

    g = torch.Generator(device="cuda").manual_seed(4)
    shapes = {"a": (2048, 1024), "b": (1024, 2048), "c": (512, 512)}
    stream = [(name, torch.randn(*shape, generator=g, device="cuda").to(dtype))
              for _ in range(2 * OFFLOAD_SLOTS) for name, shape in shapes.items()]
    sync = {n: torch.zeros(s) for n, s in shapes.items()}
    for name, grad in stream:
        sync[name] += grad.to(device="cpu", dtype=torch.float32)
    acc = {n: torch.zeros(s) for n, s in shapes.items()}
    offload = _Offload(acc, {n: torch.empty(s, device="cuda", dtype=dtype) for n, s in shapes.items()})
    for name, grad in stream:
        torch.cuda._sleep(10**7)  # the gradient below is not ready until the spin ends
        offload.add(name, grad.clone())  # the clone is freed at once, as autograd's gradient is
    offload.finish()
    assert all(torch.equal(acc[n], sync[n]) for n in shapes)


def test_llm_device_and_offload_sums_match_the_cpu_sum():
    """Separate backward passes: equal up to the GPU's nondeterministic reduction order, at most
    n·ε32·max|G| per entry with n = tokens + out + in (the sums' worst case)."""
    pytest.importorskip("transformers")
    from lorasim.llm import one_step_gradients
    from lorasim.llm.models import tiny_llama

    model = tiny_llama(0).to(device="cuda")
    ref = one_step_gradients(model, _llm_batches("cuda"), accumulate_on="cpu")
    eps = torch.finfo(torch.float32).eps
    for mode in ("offload", "device", "cuda", "cuda:0"):
        got = one_step_gradients(model, _llm_batches("cuda"), accumulate_on=mode)
        for k in ref:
            atol = (72 + sum(ref[k].shape)) * eps * float(ref[k].abs().max())
            torch.testing.assert_close(got[k].cpu(), ref[k], rtol=0, atol=atol)


def test_llm_auto_accumulation_offloads_under_a_memory_cap():
    from lorasim.llm.gradient import resolve_accumulation

    big = [torch.empty(2**26, device="cuda")]  # fp32 sums of 256 MiB
    assert resolve_accumulation(big, "auto") == "device"
    total = torch.cuda.get_device_properties(0).total_memory
    try:
        torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_allocated() + 2**28) / total)
        assert resolve_accumulation(big, "auto") == "offload"  # 256 MiB > half of the 256 MiB left
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def test_llm_sketch_on_cuda_is_the_sketch_of_the_formed_gradient():
    pytest.importorskip("transformers")
    from lorasim.llm import one_step_gradients
    from lorasim.llm.models import tiny_llama
    from lorasim.llm.sketch import one_step_sketches

    model = tiny_llama(0).to("cuda")
    grads = one_step_gradients(model, _llm_batches("cuda"), accumulate_on="device")
    sketches = one_step_sketches(model, _llm_batches("cuda"), q=8)
    eps = torch.finfo(torch.float32).eps
    for name, G in grads.items():
        sk, n = sketches[name], 72 + sum(G.shape)  # tokens + out + in, as in the CPU test of the sums
        assert float(torch.linalg.matrix_norm(sk.Y - G @ sk.omega)) <= n * eps * float(
            torch.linalg.matrix_norm(G.abs() @ sk.omega.abs()))


@pytest.mark.parametrize("n", [400, 2000])
@pytest.mark.parametrize("graphs", ["on", "off"])
def test_cuda_teacher_step_matches_the_cpu_step_that_reads_g(n, graphs):
    """On CUDA a teacher problem (G = Σ̂ΔW by construction) steps through ΔW's factors; its float64 batch follows
    the CPU float64 batch of the same problem whose G was replaced by an equal copy (so it reads G), to the
    round-off of 60 steps: 1e-10 relative, where the two CPU steps (teacher and G) differ by at most 1.6e-15
    relative on this case and a float64 GPU reduction order moves a sum by ~√(dk)·ε ≈ 8e-15. Both problems and
    inits come from the same host arrays (a CUDA generator draws other instances than the CPU's from one seed)."""
    X, _, W0, delta = _arrays(n=n)
    cpu = lorasim.LinearTeacher.from_arrays(X, None, W0, delta, r_star=3)  # Y=None: the teacher's own labels
    gpu = lorasim.LinearTeacher.from_arrays(X, None, W0, delta, r_star=3, device="cuda")
    cpu.G = cpu.G.clone()  # a user's G: the CPU run reads it
    assert gpu.teacher_factors() is not None and cpu.teacher_factors() is None
    g = torch.Generator().manual_seed(0)
    inits = [(1e-2 * torch.randn(40, 4, generator=g, dtype=torch.float64), torch.zeros(4, 30, dtype=torch.float64))
             for _ in range(3)]
    lr = 0.2 / cpu.describe()["sigma1_G"]
    frames = {}
    for name, prob in (("cpu", cpu), ("cuda", gpu)):
        trajs = lorasim.train_batch(prob, inits, solver="gd", lr=lr, steps=60, log_every=5, metrics="lean",
                                    graphs=graphs if name == "cuda" else "off")
        frames[name] = [t.to_frame() for t in trajs]
    for f_cpu, f_gpu in zip(frames["cpu"], frames["cuda"]):
        np.testing.assert_allclose(f_gpu["risk"].to_numpy(), f_cpu["risk"].to_numpy(), rtol=1e-10, atol=0)

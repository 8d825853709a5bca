"""lorasim-bench's tables that run on the CPU (the GPU tables are measured on the lent H200: benchmarks.md)."""
import os

import pytest
import torch

from lorasim import bench


def test_profile_table_lists_a_steps_kernels_with_shares_of_one_total():
    """Per (d, r, b, dtype): at most ``top`` rows, each a share of that step's profiled total (self times,
    so an operator is not counted again inside its caller: shares sum to ≤ 100 %), the step's products
    among them (on the CPU numpy's BLAS, outside torch's profiler: the rest of the wall time). Mutation: counting total (not self) times puts aten::matmul over aten::mm and the
    shares of a block over 100 %."""
    torch.set_num_threads(1)
    table = bench.profile_table(torch.device("cpu"), [64], [4], [1, 3], ["float32"], steps=3, top=5)
    assert set(table.b) == {1, 3} and table.groupby("b").size().max() <= 5
    assert (table.pct > 0).all() and table.groupby("b").pct.sum().max() <= 100 + 1e-9
    assert table.kernel.str.contains("numpy BLAS").groupby(table.b).sum().eq(1).all()  # the step's products
    assert (table.us_per_step > 0).all() and (table.step_us >= table.us_per_step).all()


def test_bench_sets_expandable_segments_unless_the_user_chose(monkeypatch, capsys):
    """The d = 16384 instance fits an 80 GB card only with expandable segments (benchmarks.md, H100): main() sets
    them before CUDA's first allocation, and keeps a user's own setting. A bad flag stops it with code 2 after."""
    for given, kept in ((None, "expandable_segments:True"), ("max_split_size_mb:64", "max_split_size_mb:64")):
        if given is None:
            monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
        else:
            monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", given)
        with pytest.raises(SystemExit) as stop:
            bench.main(["--only", "nothing"])
        assert stop.value.code == 2 and "--only" in capsys.readouterr().err
        assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == kept


def test_hand_rolled_loop_is_one_algorithm_in_torch_and_numpy_and_gives_train_batchs_curves():
    """T1's baselines: the hand-rolled loop through torch and through numpy gives the same curves (so speedup and
    speedup_np time one algorithm), and both match lorasim's figure rows (risk, align_A) at every step, from the
    teacher's factors and from G. Mutations (run by hand): a loop that logs the risk after the update fails the
    train_batch comparison, and a numpy loop that projects on G's top-r* subspace instead of its complement (cosines
    for sines) fails the torch comparison."""
    import math

    import numpy as np

    from lorasim.engine import train_batch
    from lorasim.problems import LinearTeacher

    torch.set_num_threads(1)
    d, r_star, r, steps, lr = 24, 2, 4, 40, 1 / 16
    inst = bench.instance(d, r_star, torch.device("cpu"), dtype=torch.float64, n_over_d=16)
    U_G = torch.linalg.svd(inst.problem.G)[0]
    gen = torch.Generator().manual_seed(5)
    A0s = [math.sqrt(a2) * torch.randn(d, r, generator=gen, dtype=torch.float64) for a2 in (1e-2, 1e-4)]
    B0 = torch.zeros(r, d, dtype=torch.float64)
    args = (inst.X, inst.Y, inst.W0, inst.delta, U_G)
    curves = [bench.hand_rolled_gd(*args, A0, B0, lr, steps, r_star) for A0 in A0s]  # torch's loop
    for A0, (risk_t, align_t) in zip(A0s, curves):
        risk_n, align_n = bench.hand_rolled_gd(*(x.numpy() for x in args), A0.numpy(), B0.numpy(), lr, steps, r_star)
        # Bound for both comparisons: the loops round their products differently, ~ε = 2.2e-16 relative a step,
        # carried by GD's map, whose growth is ≈ (1 + η‖Σ̂‖·max(‖A‖², ‖B‖²))^40 ≈ 45 here (‖Σ̂‖ ≤ (1 + 1/4)² at
        # N = 16d, factors of norm ≲ 1): 40·45·ε ≈ 4e-13, so 1e-10 (risk ≥ 0.5 throughout, so relative and absolute
        # are alike). Seen: ≤ 5e-15; logging one step late moves them by 1e-3 to 5e-2.
        assert np.max(np.abs(risk_n - risk_t) / risk_t) < 1e-10 and np.max(np.abs(align_n - align_t)) < 1e-10
    for teacher in (True, False):
        prob = LinearTeacher.from_arrays(X=inst.X, Y=inst.Y, W0=inst.W0, delta=inst.delta, r_star=r_star)
        prob.teacher_step = teacher
        trajs = train_batch(prob, [(A0, B0) for A0 in A0s], solver="gd", lr=lr, steps=steps, metrics="figure")
        for (risk, align), tr in zip(curves, trajs):
            df = tr.to_frame()
            assert len(df) == steps + 1
            assert np.max(np.abs(df["risk"].to_numpy() - risk) / risk) < 1e-10
            assert np.max(np.abs(df["align_A"].to_numpy() - align)) < 1e-10


def test_t1_table_times_both_loops_and_checks_the_curves():
    """``lorasim-bench --only t1`` end to end, shortened: every setting's row has both speed-ups from the same lorasim
    times, and the curves it compares agree (lorasim against torch's loop, numpy's against torch's) where a wrong
    step or metric would put them 1e-3 or more apart (the test above)."""
    torch.set_num_threads(1)
    table = bench.t1_table(settings=(("figure", 1, "teacher"), ("risk", 30, "teacher")), steps=30)
    assert list(table.metrics) == ["figure", "risk"] and list(table.points_per_curve) == [31, 2]
    assert (table.speedup > 0).all() and (table.speedup_np > 0).all()
    ratio = table.speedup_np / table.speedup
    assert (abs(ratio - table.hand_rolled_np_s[0] / table.hand_rolled_s[0]) < 1e-12).all()
    assert (table.max_rel_risk_diff < 1e-10).all() and table.max_abs_align_diff[0] < 1e-10
    assert (table.np_vs_torch_diff < 1e-10).all()

"""The same runs on CUDA and on CPU agree (skipped without a GPU)."""
import numpy as np
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

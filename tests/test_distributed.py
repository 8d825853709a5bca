"""Distributed and multi-GPU pieces (issue 7): under torch.distributed, 2 CPU processes (gloo), each
with half the init batches, produce the LoRA-One init (from the gradients, and from the sketches of
issue 15) that 1 process computes on the union of their batches; local sweep jobs take the GPUs in turn; every app launches with NVLink multicast off."""
import os
import socket

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from lorasim.llm import lora_one_model, one_step_gradients  # noqa: E402
from lorasim.llm.init import lora_one_peft  # noqa: E402
from lorasim.llm.sketch import one_step_sketches, sketch_top_r, sketched_top_r  # noqa: E402
from lorasim.llm.models import tiny_llama  # noqa: E402
from lorasim.metrics import sin_theta  # noqa: E402

torch.set_num_threads(1)


def _batches():
    g = torch.Generator().manual_seed(11)
    return [{"input_ids": (ids := torch.randint(0, 259, (2, 10), generator=g)), "labels": ids} for _ in range(4)]


def _adapters(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def _rank(rank, world, port, out_dir):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        base = tiny_llama(0)
        shard = _batches()[rank::world]  # rank 0: batches 0, 2; rank 1: batches 1, 3
        grads = one_step_gradients(base, shard)
        sketches = one_step_sketches(base, shard, q=16)
        sketched = _adapters(lora_one_peft(tiny_llama(0), sketch_top_r(sketches, 4), r=4, gamma=16.0))
        two_pass = sketched_top_r(tiny_llama(0), shard, 4, q=16, passes=2)
        model = lora_one_model(base, grads, r=4, gamma=16.0)
        torch.save({"grads": grads, "adapters": _adapters(model), "sketches": {n: (s.Y, s.Z) for n, s in sketches.items()},
                    "sketched": sketched, "two_pass": two_pass}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_give_the_one_process_init_on_the_union(tmp_path):
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    base = tiny_llama(0)
    grads = one_step_gradients(base, _batches())
    single = _adapters(lora_one_model(base, grads, r=4, gamma=16.0))
    for name, g in grads.items():
        torch.testing.assert_close(ranks[0]["grads"][name], g, rtol=1e-5, atol=1e-7)
    for name in single:
        assert torch.equal(ranks[0]["adapters"][name], ranks[1]["adapters"][name])  # identical on every rank
    # The update ΔW0 ∝ lora_B·lora_A per layer, up to the float32 randomized SVD of two gradients that
    # differ by summation order (the identity test's tolerance).
    for name in (n for n in single if ".lora_A." in n):
        other = name.replace(".lora_A.", ".lora_B.")
        want = single[other] @ single[name]
        got = ranks[0]["adapters"][other] @ ranks[0]["adapters"][name]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=5e-5 * float(want.abs().max()))
    # The sketches are linear in G and Ω, Ψ depend only on (seed, shape): the all-reduced sketches are
    # the one-process sketches of the union, and every rank takes rank 0's factors.
    for name, sk in one_step_sketches(tiny_llama(0), _batches(), q=16).items():
        for have, want in zip(ranks[0]["sketches"][name], (sk.Y, sk.Z)):
            torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    for name in ranks[0]["sketched"]:
        assert torch.equal(ranks[0]["sketched"][name], ranks[1]["sketched"][name])
    # Two passes: the first pass's all-reduced range sketch gives every rank the same basis Q for the
    # second, so the result is the one-process result on the union (up to summation order).
    # Tolerance: the sums differ by summation order, ≤ n·ε32·σ1 with n = tokens + out + in, which moves
    # the top-4 subspace by at most that over the gap σ4 − σ5 (Wedin), and σ by that much.
    eps, tokens = torch.finfo(torch.float32).eps, sum(b["input_ids"].numel() for b in _batches())
    for name, (U, S, V) in sketched_top_r(tiny_llama(0), _batches(), 5, q=16, passes=2).items():
        have_U, have_S, _ = ranks[0]["two_pass"][name]
        err = (tokens + U.shape[0] + V.shape[0]) * eps * float(S[0])
        torch.testing.assert_close(have_S, S[:4], rtol=0, atol=err)
        assert float(sin_theta(U[:, :4].double(), have_U.double())) <= err / float(S[3] - S[4]), name


def test_local_sweep_jobs_take_the_gpus_in_turn():
    from lorasim.job import assigned_gpu

    assert [assigned_gpu(n, 2) for n in range(5)] == [0, 1, 0, 1, 0]
    assert assigned_gpu(3, 1) is None and assigned_gpu(0, 0) is None


@pytest.mark.parametrize("config_dir, name", [("", "config"), ("", "verify"), ("llm", "llm")])
def test_every_app_launches_with_nvlink_multicast_off(config_dir, name):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from lorasim.job import conf_dir

    with initialize_config_dir(config_dir=str(Path(conf_dir()) / config_dir), version_base="1.3"):
        cfg = compose(config_name=name, return_hydra_config=True)
    env = cfg.hydra.job.env_set
    assert (env.NCCL_NVLS_ENABLE, env.TORCH_SYMM_MEM_DISABLE_MULTICAST, env.NVSHMEM_DISABLE_NVLS) == ("0", "1", "1")

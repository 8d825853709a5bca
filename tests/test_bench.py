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

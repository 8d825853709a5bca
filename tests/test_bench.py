"""lorasim-bench's tables that run on the CPU (the GPU tables are measured on the lent H200: benchmarks.md)."""
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

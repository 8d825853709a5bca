"""The one-step full-batch gradient of a model's target linear layers, with bounded memory.

G_W = (1/m) Σ_batches ∇_W loss(batch) for every target weight W (torch layout, out × in), the
quantity LoRA-One factorises (SPEC §4.3, §6.2 step 2). Only the target weights take gradients;
every other parameter is frozen for the pass. Each weight's gradient is added to its fp32 sum and
freed as soon as autograd has formed it (a post-accumulate hook), so the device holds the model, one
micro-batch's activations, one target layer's gradient and, when they are summed there, the sums.
Where they are summed (``accumulate_on``) is decided from the free device memory by default: on
the device when they fit, else on the host through pinned buffers and a side stream, so that the
passes are not serialised on device→host copies. When even that is too much, lorasim/llm/sketch.py
estimates the factors without forming any gradient.

Under torch.distributed (torchrun, accelerate) each rank passes its own shard of the init batches;
the sums and the batch count are all-reduced, so every rank gets the mean over all ranks' batches —
the gradient one process would compute on their union — before any SVD.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.distributed as dist

from .. import streams
from .head import backward_chunked, chunked_head_applies

TASK_HEADS = ("classifier", "score", "lm_head")  # trained in full (peft modules_to_save), never adapted


def target_linear_names(model: torch.nn.Module, targets: Union[str, Sequence[str]] = "all-linear") -> list[str]:
    """Names of the nn.Linear modules LoRA adapts: every one except the output head or a task head
    ("all-linear": the official "all" preset, peft's "all-linear"), or those whose name ends with one
    of ``targets``."""
    out_head = getattr(model, "get_output_embeddings", lambda: None)()
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or mod is out_head or name.split(".")[-1] in TASK_HEADS:
            continue
        if targets == "all-linear" or any(name == t or name.endswith("." + t) for t in targets):
            names.append(name)
    if not names:
        raise ValueError(f"targets={targets!r}: allowed 'all-linear' or module-name suffixes present in the model")
    return names


ACCUMULATE = ("auto", "device", "offload", "cpu")
DEVICE_SHARE = 0.5  # auto: accumulate on the device when the fp32 sums take at most this share of the free memory
OFFLOAD_SLOTS = 8   # pinned staging buffers in flight per offloading pass (bounded host memory)


INIT_MODES = ("eval", "train")


@contextmanager
def frozen_for_init(model: torch.nn.Module, trainable: Sequence[torch.Tensor], mode: str = "eval"):
    """Only ``trainable`` takes gradients, starting from none (a ``.grad`` they held is set aside and
    given back), and the model is in ``mode`` ("eval": no dropout in the estimate; "train": dropout
    on, its masks from the "llm/init_dropout" stream, see ``backward_each``); the ``requires_grad``
    flags, the gradients and the training mode are restored afterwards."""
    if mode not in INIT_MODES:
        raise ValueError(f"mode={mode!r}: allowed one of {', '.join(INIT_MODES)}")
    flags = {p: p.requires_grad for p in model.parameters()}
    held = {w: w.grad for w in trainable}
    was_training = model.training
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for w in trainable:
            w.grad = None
            w.requires_grad_(True)
        model.train(mode == "train")
        yield
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
        for w, g in held.items():
            w.grad = g
        model.train(was_training)


def resolve_accumulation(weights: Sequence[torch.Tensor], accumulate_on: Union[str, torch.device]) -> str:
    """"device", "offload" or "cpu" for ``accumulate_on``. "auto" takes "device" when, on every device
    holding target weights, their fp32 sums need at most DEVICE_SHARE of its free memory, else
    "offload"; a device name means "cpu" for the CPU and "device" for the weights' own device."""
    devices = {w.device for w in weights} or {torch.device("cpu")}
    accumulate_on = str(accumulate_on)  # torch.device("cpu") is the setting "cpu"
    if accumulate_on not in ACCUMULATE:
        where = torch.device(accumulate_on)
        if where.type == "cpu":
            return "cpu"
        if any(d.type != where.type or where.index not in (None, d.index) for d in devices):
            raise ValueError(f"accumulate_on={accumulate_on!r}: allowed one of {', '.join(ACCUMULATE)}, "
                             "or the device the target weights are on")
        return "device"
    if all(d.type != "cuda" for d in devices):
        return "cpu" if accumulate_on in ("offload", "cpu") else "device"
    if accumulate_on != "auto":
        return accumulate_on
    need = {d: 0 for d in devices}
    for w in weights:
        need[w.device] += w.numel() * 4
    fits = all(d.type != "cuda" or n <= DEVICE_SHARE * free_device_memory(d) for d, n in need.items())
    return "device" if fits else "offload"


def free_device_memory(device: torch.device) -> int:
    """Bytes this process can still allocate on ``device``: the driver's free memory plus what torch's
    cache holds unused, within torch.cuda.set_per_process_memory_fraction's cap less what is allocated."""
    free, total = torch.cuda.mem_get_info(device)
    allocated, reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _: 1.0)(device)
    return int(max(0, min(free + reserved - allocated, fraction * total - allocated)))


class _Offload:
    """Device-to-host accumulation that does not serialise the backward pass on copies: each layer's
    gradient is copied, on a side stream of its own device, into a pinned staging slot, and a worker
    thread adds the slot to the host fp32 sum once the copy's event has fired. The worker runs the
    adds in submission order, so every sum is formed in the same order, with the same fp32 adds, as
    synchronous accumulation: the result is bitwise the same. Slots are reused round-robin; a slot
    waits for its last add, so the passes run no faster than the host can add (one worker: the adds
    are memory-bound, and torch already spreads each one over the cores)."""

    def __init__(self, acc: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]):
        self.acc = acc
        self.cuda = any(w.is_cuda for w in weights.values())
        biggest = max(w.numel() for w in weights.values())
        dtype = next(iter(weights.values())).dtype
        self.slots = [torch.empty(biggest, dtype=dtype, pin_memory=self.cuda) for _ in range(OFFLOAD_SLOTS)]
        self.pending: list = [None] * OFFLOAD_SLOTS
        self.next = 0
        self.streams = {w.device: torch.cuda.Stream(device=w.device) for w in weights.values() if w.is_cuda}
        self.pool = ThreadPoolExecutor(max_workers=1)

    def add(self, name: str, grad: torch.Tensor) -> None:
        i, self.next = self.next, (self.next + 1) % OFFLOAD_SLOTS
        if self.pending[i] is not None:
            self.pending[i].result()  # backpressure: the slot's previous add is done
        staged = self.slots[i][: grad.numel()].view(grad.shape)
        if grad.dtype != staged.dtype:
            staged = torch.empty(grad.shape, dtype=grad.dtype, pin_memory=self.cuda)
        event = None
        if grad.is_cuda:
            stream = self.streams[grad.device]
            with torch.cuda.device(grad.device):  # a device-to-host copy runs on its source device's stream
                stream.wait_stream(torch.cuda.current_stream(grad.device))
                with torch.cuda.stream(stream):
                    staged.copy_(grad, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record(stream)
            grad.record_stream(stream)  # its memory is not reused before the copy is done
        else:
            staged.copy_(grad)
        self.pending[i] = self.pool.submit(self._accumulate, name, staged, event)

    def _accumulate(self, name, staged, event) -> None:
        if event is not None:
            event.synchronize()
        self.acc[name].add_(staged)  # bf16 → fp32 is exact: the same adds as the synchronous sum's

    def finish(self) -> None:
        """Waits for every add; the worker is shut down even when one failed (its error is raised)."""
        try:
            for f in self.pending:
                if f is not None:
                    f.result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def backward_each(model: torch.nn.Module, batches: Iterable[dict], loss_fn: Optional[callable] = None,
                  seed: int = 0) -> int:
    """Forward and backward of each batch; the number of batches. A causal LM's own loss goes back
    through its head a chunk of tokens at a time (lorasim/llm/head.py); otherwise the model's output
    is dropped before its backward, so a batch's logits never sit beside the next batch's activations.
    A model in train mode draws its dropout masks from the (seed, "llm/init_dropout") stream, the
    same in every pass (a multi-pass sketch sees one G), and the global RNG is left as it was."""
    if not model.training:
        return _backward_each(model, batches, loss_fn)
    devices = [d for d in {p.device for p in model.parameters()} if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(streams.stream_seed(seed, "llm/init_dropout"))
        return _backward_each(model, batches, loss_fn)


def per_example_loss(out, batch: dict) -> torch.Tensor:
    """The init loss averaged per example: each example's mean next-token loss over its kept labels
    (−100 dropped), then the mean over the batch's examples that keep any. With one example per
    micro-batch (the official recipe) it equals transformers' per-token mean; a classifier's loss is
    per example already."""
    if out.logits.dim() == 2:
        return out.loss
    logits = out.logits[:, :-1].to(torch.promote_types(out.logits.dtype, torch.float32))  # as head.py
    labels = batch["labels"][:, 1:].to(out.logits.device)
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    kept = labels != -100
    per_example = per_token.sum(1) / kept.sum(1).clamp_min(1)
    return per_example[kept.any(1)].mean()


def _backward_each(model, batches, loss_fn) -> int:
    count = 0
    for count, batch in enumerate(batches, 1):
        if loss_fn is None and chunked_head_applies(model, batch):
            backward_chunked(model, batch)
            continue
        out = model(**batch)
        loss = loss_fn(out, batch) if loss_fn is not None else out.loss
        del out
        loss.backward()
    return count


def one_step_gradients(model: torch.nn.Module, batches: Iterable[dict], targets: Union[str, Sequence[str]] = "all-linear",
                       accumulate_on: Union[str, torch.device] = "auto",
                       loss_fn: Optional[callable] = None, mode: str = "eval",
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """{module name: mean over ``batches`` of ∇_W loss} for the target linear layers (out × in, fp32).

    ``batches`` are keyword dicts for ``model(**batch)``; the loss is ``output.loss`` unless
    ``loss_fn(output, batch)`` is given. ``accumulate_on``: "device" keeps the fp32 sums on the
    weights' device (no copies); "offload" sums on the host, copies overlapping the passes
    (``_Offload``; the passes then run at the host's add bandwidth, 10 bytes per target weight and
    batch); "cpu" copies each gradient to the host synchronously (the reference for "offload");
    "auto" as ``resolve_accumulation`` says. ``mode`` and ``seed``: the model's mode for the passes
    and its dropout stream (``frozen_for_init``). The results live where they were summed. Flags,
    gradients and training mode are restored afterwards.
    """
    weights = {name: model.get_submodule(name).weight for name in target_linear_names(model, targets)}
    summed = resolve_accumulation(list(weights.values()), accumulate_on)
    home = {name: (w.device if summed == "device" else torch.device("cpu")) for name, w in weights.items()}
    acc = {name: torch.zeros(w.shape, dtype=torch.float32, device=home[name]) for name, w in weights.items()}
    offload = _Offload(acc, weights) if summed == "offload" else None
    hooks = []

    def take(name):
        def hook(p):
            if offload is not None:
                offload.add(name, p.grad)
            elif summed == "device":
                acc[name] += p.grad
            else:
                acc[name].add_(p.grad.detach().to("cpu"))
            p.grad = None  # freed at once: one target gradient on the device at a time
        return hook

    with frozen_for_init(model, list(weights.values()), mode):
        try:
            hooks = [w.register_post_accumulate_grad_hook(take(name)) for name, w in weights.items()]
            count = backward_each(model, batches, loss_fn, seed)
        except BaseException:
            if offload is not None:  # the pass's own error is the one raised, not a worker's
                with suppress(Exception):
                    offload.finish()
            raise
        finally:
            for h in hooks:
                h.remove()
        if offload is not None:
            offload.finish()
    total = torch.tensor([count], dtype=torch.int64)  # summed over the ranks with the accumulators
    collective([*acc.values(), total], lambda buf: dist.all_reduce(buf))
    count = int(total.item())
    if count == 0:
        raise ValueError("batches: allowed at least one batch")
    return {name: g.div_(count) for name, g in acc.items()}


def collective(tensors: Iterable[torch.Tensor], op) -> None:
    """``op(buf)``, a torch.distributed collective in place (all_reduce, broadcast), on each tensor in
    turn, where a default process group of more than one rank runs. NCCL works on CUDA tensors only,
    so CPU tensors travel through the rank's GPU one at a time."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    for t in tensors:
        buf = t if comm is None or t.device == comm else t.to(comm)
        op(buf)
        if buf is not t:
            t.copy_(buf)

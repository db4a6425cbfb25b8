"""UncertaintyModel inside DistributedDataParallel (2 CPU processes, gloo) and under torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from .backbones import Backbone, perturb_adapters

WORLD = 2


def _inputs():
    generator = torch.Generator().manual_seed(3)
    return torch.rand(4, 3, 64, 64, generator=generator), torch.randn(4, 6, generator=generator)


def _model():
    backbone = Backbone("sam")
    model = backbone.inject()
    perturb_adapters(model)
    return model


def _ddp_worker(rank: int, init_file: str, result_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        model = DistributedDataParallel(_model())  # no find_unused_parameters needed
        x, z = _inputs()
        shard = slice(2 * rank, 2 * rank + 2)
        model(x[shard], z=z[shard]).pow(2).mean().backward()
        grads = {n: p.grad.clone() for n, p in model.module.named_parameters() if p.requires_grad}
        torch.save(grads, f"{result_dir}/rank-{rank}.pt")
        dist.barrier()  # both ranks tear gloo down together: a rank leaving early can abort the other
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_ddp_gradients_equal_single_process_gradients(tmp_path):
    # Each rank saves its gradients once its backward (and so DDP's all-reduce) is done. What
    # happens after that is gloo's teardown, which now and then aborts a finished rank
    # ("terminate called without an active exception"); that is torch's, not what is tested
    # here, so the ranks are judged by the gradients they saved, not by their exit codes.
    context = mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=False)
    for process in context.processes:
        process.join(timeout=300)
        if process.is_alive():  # a rank stuck in a collective: stop it, and fail below
            process.kill()
            process.join()
    saved = [tmp_path / f"rank-{rank}.pt" for rank in range(WORLD)]
    assert all(path.exists() for path in saved), [process.exitcode for process in context.processes]
    ddp_grads = torch.load(saved[0], weights_only=True)

    model = _model()
    x, z = _inputs()
    model(x, z=z).pow(2).mean().backward()
    expected = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert set(ddp_grads) == set(expected)
    for name, grad in expected.items():
        torch.testing.assert_close(ddp_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    other_rank = torch.load(saved[1], weights_only=True)  # DDP leaves every rank the same gradients
    for name, grad in ddp_grads.items():
        torch.testing.assert_close(other_rank[name], grad, msg=name)


def test_torch_compile_traces_the_adapted_model_without_graph_breaks():
    import torch._dynamo as dynamo

    model = _model()
    x, z = _inputs()
    dynamo.reset()
    explanation = dynamo.explain(model)(x, z=z)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, backend="aot_eager")
    torch.testing.assert_close(compiled(x, z=z), model(x, z=z))

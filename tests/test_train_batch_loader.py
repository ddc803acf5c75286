"""The trainer reads its micro-batches through the shared-ring BatchLoader, with any worker count."""

from __future__ import annotations

from helpers import losses, tiny_diffusion_config

from hpc_seaice.config import config_from_dict
from hpc_seaice.data.loading import batch_loader
from hpc_seaice.train import trainer


def _run(tiny_dataset, run_dir, monkeypatch, **data) -> tuple[dict[int, float], list[dict]]:
    made: list[dict] = []

    class Recorded(batch_loader.BatchLoader):
        def __init__(self, dataset, sampler, batch_size, **kwargs) -> None:
            made.append({"in_memory": dataset._memory is not None, "batch": batch_size, **kwargs})
            super().__init__(dataset, sampler, batch_size, **kwargs)

        def __iter__(self):
            for batch in super().__iter__():
                made[-1]["batches"] = made[-1].get("batches", 0) + 1
                yield batch

    monkeypatch.setattr(trainer, "BatchLoader", Recorded)
    config = tiny_diffusion_config(
        tiny_dataset, run_dir, data=data, train={"max_steps": 4, "checkpoint_every": 4, "grad_accum": 2}
    )
    assert trainer.run_training(config_from_dict(config)) == 0
    return losses(run_dir), made


def test_training_goes_through_the_batch_loader_with_the_same_losses(tiny_dataset, tmp_path, monkeypatch):
    reference, made = _run(tiny_dataset, tmp_path / "reference", monkeypatch, num_workers=0)
    assert len(made) == 1 and made[0]["num_workers"] == 0 and not made[0]["in_memory"]
    # global batch 4 = micro 2 x grad_accum 2: a step keeps 2 micro-batches, plus one for the next fetch
    assert made[0]["batch"] == 2 and made[0]["hold"] == 3 and made[0]["batches"] == 4 * 2
    assert list(reference) == [1, 2, 3, 4]
    for workers, in_memory in [(1, False), (1, True), (0, True)]:
        name = f"workers{workers}-memory{in_memory}"
        got, made = _run(tiny_dataset, tmp_path / name, monkeypatch, num_workers=workers, in_memory=in_memory)
        assert len(made) == 1 and made[0]["num_workers"] == workers and made[0]["in_memory"] == in_memory, name
        assert made[0]["batches"] >= 4 * 2, name
        assert got == reference, name  # bitwise: the same samples in the same order, whoever reads them

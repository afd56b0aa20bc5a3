"""`omniseg train CONFIG`: multi-dataset training of the native model with resume.

Checkpoints hold everything needed to continue exactly (model, optimiser, step); the sampler is a
pure function of (seed, step), so a resumed run draws the same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from omniseg.atomic import atomic_write_text
from omniseg.errors import InputError
from omniseg.models.openseg import OpenSegModel
from omniseg.train.checkpoints import init_from_model, load_checkpoint, save_checkpoint, truncate_log
from omniseg.train.config import TrainConfig
from omniseg.train.data import draw_batch, load_sources
from omniseg.train.distributed import average_gradients, rank_and_world
from omniseg.train.objective import compute_losses
from omniseg.train.plot import plot_log
from omniseg.train.schedule import build_optimizer, lr_factor


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    """Train (or resume) the run in cfg.out_dir. Under torchrun every process takes its share of
    each global batch (batch_size is global); rank 0 writes the log, checkpoints and the model."""
    import torch.distributed as dist

    rank, world = rank_and_world()
    if cfg.batch_size % world:
        raise InputError(f"batch_size {cfg.batch_size} must be divisible by the {world} processes")
    torch.set_num_threads(max(1, cfg.threads // world))
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
    model = OpenSegModel(cfg.model)
    model.train()
    optimizer = build_optimizer(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    ckpt = out / "checkpoint"
    step = load_checkpoint(ckpt, model, optimizer) if resume and (ckpt / "state.json").is_file() else 0
    if step == 0 and cfg.init_from:
        report = init_from_model(model, cfg.init_from)
        if rank == 0:
            print(
                f"started from {cfg.init_from}: {len(report['copied'])} tensors copied"
                + "".join(f"; {p}" for p in report["partly"])
                + (f"; new: {', '.join(report['new'])}" if report["new"] else "")
            )
    data = load_sources(cfg)
    log_path = out / "log.jsonl"
    if rank == 0:
        truncate_log(log_path, step)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True, disable=rank != 0)
    start, first_step = time.time(), step
    running: dict[str, float] = {}
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(cfg, step)
        batch = draw_batch(cfg, data, step, (rank, world))
        terms = compute_losses(model, cfg, data, batch)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        if world > 1:
            average_gradients(params, world)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale_class.clamp_(0, math.log(100))
            model.logit_scale_grounding.clamp_(0, math.log(100))
        step += 1
        values = torch.stack([v.detach() for v in terms.values()])
        if world > 1:
            dist.all_reduce(values)
            values /= world
        for k, v in zip(terms, values.tolist(), strict=True):
            running[k] = running.get(k, 0.0) + v
        bar.update(1)
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            elapsed = time.time() - start
            record = {
                "step": step,
                "lr": optimizer.param_groups[0]["lr"],
                "elapsed": round(elapsed, 1),
                "images_per_s": round((step - first_step) * cfg.batch_size / max(elapsed, 1e-9), 3),
                **{k: round(v / n, 5) for k, v in running.items()},
            }
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['total']:.3f}")
        if step % cfg.log_every == 0:
            running = {}
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            if rank == 0:
                save_checkpoint(ckpt, model, optimizer, step)
            if world > 1:
                dist.barrier()
    bar.close()
    final = out / "model"
    if rank == 0:
        model.eval().save_pretrained(final, {"trained_steps": step})

        plot_log(log_path, out / "loss_curve.png")
    if world > 1:
        dist.barrier()
    return final

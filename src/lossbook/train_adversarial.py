r"""Adversarial training: a generator and a discriminator, stepped in turn.

:func:`fit_adversarial` is :func:`lossbook.train.fit`'s sibling for GAN-style training of
an image-to-image network (SRGAN, pix2pix without the conditioning). Each step draws one
batch ``(z, y)`` (input, target) and

1. **discriminator step** -- with the generator's output :math:`x = G(z)` held fixed,
   minimise :math:`\mathcal{L}_D(D(y), D(x))` (+ the R1 penalty if ``r1_gamma > 0``);
2. **generator step** -- minimise
   :math:`\mathcal{L}_G = \mathcal{L}_{content}(G(z), y) + \lambda\,
   \mathcal{L}_{adv}(D(G(z)))`,

with the losses of :mod:`lossbook.losses.adversarial` (``gan_kind`` = non-saturating,
hinge or least squares) and any content loss (L1, a perceptual loss, ...). With
:math:`\lambda = 0` only the content loss trains the generator (the discriminator still
learns and is logged), which makes a clean baseline.

It keeps ``fit``'s guarantees, using ``fit``'s own helpers (:mod:`lossbook.train`):

* **exact resume** -- both models, both optimisers, both gradient scalers, the random
  generator, the logging window and the history go into one atomic, checksummed
  checkpoint (:func:`lossbook.train.save_checkpoint`) every ``checkpoint_every`` steps,
  at the end and on Ctrl-C / ``KeyboardInterrupt`` (deferred to the end of the step).
  Every batch is a pure function of ``(seed, step)``, so calling again with the same
  arguments resumes and, on the CPU, ends with bitwise the same weights as an
  uninterrupted run;
* **safe checkpoints** -- a damaged checkpoint is refused (``CheckpointError``), one
  written by a different run (other models, losses, optimiser settings, data, GAN
  settings) is refused naming the setting (``RunMismatchError``,
  :func:`lossbook.train.run_fingerprint`), a second run on the same path is locked out
  (:func:`lossbook.train.checkpoint_lock`), and an unwritable path fails before training;
* **NaN guard** -- a non-finite discriminator or generator loss stops training with the
  step and the components of that step and of the last logged one;
* a **progress bar** with both losses, **AMP** on CUDA (models under autocast, losses in
  float32 on the float32 prediction), and the **GPU-forgotten warning**.

One process only (no ``torch.distributed``).

References
----------
I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014.
C. Ledig et al., "Photo-realistic single image super-resolution using a generative
adversarial network" (SRGAN: content loss + 1e-3 x adversarial), CVPR 2017.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .losses.adversarial import GAN_KINDS, discriminator_loss, generator_loss, r1_penalty
from .train import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    DeferInterrupt,
    History,
    LossWindow,
    RunMismatchError,
    Sampler,
    autocast_for,
    check_batch,
    check_fingerprint,
    check_output_path,
    check_prediction,
    checkpoint_lock,
    load_checkpoint,
    optimizer_settings,
    resolve_amp,
    resolve_device,
    run_fingerprint,
    save_checkpoint,
    split_loss,
    step_seed,
    validate_model,
    warn_if_gpu_forgotten,
)

__all__ = ["fit_adversarial", "ADVERSARIAL_COMPONENTS"]

ADVERSARIAL_COMPONENTS = ("content", "adversarial", "d_loss", "d_real", "d_fake")
"""What :func:`fit_adversarial` logs in ``History.components`` (besides the content loss's
own terms): the generator's content and adversarial terms, the discriminator's loss, and
the mean discriminator logit on real and on generated images."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return value


def fit_adversarial(
    generator: nn.Module,
    discriminator: nn.Module,
    content_loss: Callable[..., torch.Tensor],
    data: Sampler,
    *,
    steps: int,
    adv_weight: float = 1e-3,
    gan_kind: str = "nonsaturating",
    batch_size: int = 16,
    lr_g: float = 1e-4,
    lr_d: float = 1e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    r1_gamma: float = 0.0,
    device: str | torch.device = "auto",
    amp: str | bool | None = "auto",
    val_data: tuple[torch.Tensor, torch.Tensor] | Callable | None = None,
    val_every: int | None = None,
    log_every: int = 10,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    data_range: float = 1.0,
    grad_clip: float | None = None,
    callback: Callable[[int, nn.Module, History], None] | None = None,
    progress: bool = True,
    restart: bool = False,
) -> History:
    r"""Train ``generator`` against ``discriminator`` for ``steps`` steps; return the History.

    Parameters
    ----------
    generator : nn.Module
        The image-to-image network :math:`G`, ``(N, C_in, h, w) -> (N, C, H, W)``.
        Initialise it (e.g. from a content-loss-only run, as SRGAN does) before calling.
    discriminator : nn.Module
        :math:`D`, images ``(N, C, H, W)`` -> logits ``(N, ...)`` (e.g.
        :class:`lossbook.models.PatchGANDiscriminator`, one logit per patch).
    content_loss : callable
        ``content_loss(prediction, target)`` -> scalar or ``(total, {name: value})``.
    data : callable
        ``data(batch_size, generator) -> (inputs, targets)``, as for :func:`fit`.
    steps : int
        Total steps (one discriminator and one generator update each).
    adv_weight : float
        :math:`\lambda` (SRGAN: 1e-3). 0 trains the generator on the content loss alone.
    gan_kind : {"nonsaturating", "hinge", "lsgan", "minimax"}
        The GAN loss pair (:func:`lossbook.losses.discriminator_loss`).
    batch_size : int
        Images per step.
    lr_g, lr_d : float
        Adam learning rates of the generator and the discriminator (default 1e-4 each).
    betas : (float, float)
        Adam's betas for both (default (0.5, 0.999), the usual GAN choice).
    r1_gamma : float
        Weight of the R1 penalty on real images (0: off).
    device, amp, val_data, val_every, log_every, checkpoint, checkpoint_every, seed, \
data_range, grad_clip, callback, progress
        As in :func:`lossbook.train.fit` (``grad_clip`` applies to both networks;
        ``val_data`` is scored with the content loss and PSNR).
    restart : bool
        Ignore an existing ``checkpoint`` and train from scratch, replacing it at the
        first save. Default ``False``: resume from it (after checking it).

    Returns
    -------
    History
        ``loss`` is the generator's total loss; ``components`` holds
        :data:`ADVERSARIAL_COMPONENTS` and the content loss's own terms.

    Raises
    ------
    FloatingPointError
        If a loss becomes NaN or infinite.
    ValueError, TypeError
        For invalid arguments or a bad first batch.
    CheckpointError, RunMismatchError
        (``ValueError`` subclasses) for a damaged checkpoint, or one written by a
        different run.
    CheckpointLockedError
        If another live process is training on the same checkpoint path.
    """
    _positive_int("steps", steps)
    _positive_int("batch_size", batch_size)
    _positive_int("log_every", log_every)
    if gan_kind not in GAN_KINDS:
        raise ValueError(f"gan_kind must be one of {', '.join(map(repr, GAN_KINDS))}; got "
                         f"{gan_kind!r}.")
    for name, value in (("adv_weight", adv_weight), ("r1_gamma", r1_gamma)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    if not isinstance(restart, bool):
        raise TypeError(f"restart must be True or False; got {restart!r}.")
    if not callable(data):
        raise TypeError(f"data must be a callable data(batch_size, generator) -> (inputs, "
                        f"targets); got {type(data).__name__}.")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise RuntimeError("fit_adversarial runs in one process; use fit for "
                           "torch.distributed training.")

    # --- where, how, and from which step ------------------------------------------------
    device = resolve_device(device)
    amp = resolve_amp(amp, device)
    if checkpoint is not None:
        check_output_path(checkpoint)  # before any work: a read-only directory fails now
    warn_if_gpu_forgotten(device)
    generator.to(device)
    discriminator.to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    scaler_g = torch.amp.GradScaler("cuda", enabled=(amp == "fp16"))
    scaler_d = torch.amp.GradScaler("cuda", enabled=(amp == "fp16"))
    gen = torch.Generator(device=device)
    checkpoint_every = checkpoint_every or max(1, steps // 10)
    val_every = val_every or max(log_every, steps // 10)
    config = {"batch_size": batch_size, "seed": seed, "world_size": 1, "adversarial": True,
              "adv_weight": float(adv_weight), "gan_kind": gan_kind,
              "r1_gamma": float(r1_gamma)}

    fingerprint = run_fingerprint(
        generator=generator, discriminator=discriminator, content_loss=content_loss,
        optimizer_g=optimizer_settings(opt_g), optimizer_d=optimizer_settings(opt_d),
        data=data, grad_clip=grad_clip, data_range=data_range, **config,
    )
    with contextlib.ExitStack() as held:
        if checkpoint is not None:
            held.enter_context(checkpoint_lock(checkpoint))  # one run per checkpoint
        history = History(device=str(device), amp=amp, world_size=1)
        window = LossWindow()
        if checkpoint is not None and Path(checkpoint).exists() and not restart:
            state = load_checkpoint(checkpoint, map_location=device)
            saved = state.get("config", {})
            for key, value in config.items():  # the clearest message for the usual ones
                if saved.get(key) != value:
                    raise RunMismatchError(
                        f"checkpoint {checkpoint} was written with {key}={saved.get(key)!r} "
                        f"but this run asks for {key}={value!r}; a resumed run must use the "
                        "same settings. Delete the checkpoint (or pass restart=True) to "
                        "start over.", {key: (repr(saved.get(key)), repr(value))})
            check_fingerprint(state.get("fingerprint"), fingerprint, path=checkpoint)
            try:
                generator.load_state_dict(state["generator"])
                discriminator.load_state_dict(state["discriminator"])
                opt_g.load_state_dict(state["opt_g"])
                opt_d.load_state_dict(state["opt_d"])
                scaler_g.load_state_dict(state["scaler_g"])
                scaler_d.load_state_dict(state["scaler_d"])
                gen.set_state(state["rng"].to(gen.get_state().device))
                history = History.from_dict(state["history"])
                window = LossWindow(**state["window"])
                step_saved = int(state["step"])
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise CheckpointError(
                    f"cannot resume from checkpoint {checkpoint}: its training state is "
                    f"incomplete ({type(err).__name__}: {err}). Delete it (or pass "
                    "restart=True) to start over.") from err
            history.resumed_from = step_saved
            history.device, history.amp = str(device), amp
        return _loop(
            generator=generator, discriminator=discriminator, content_loss=content_loss,
            data=data, steps=steps, adv_weight=adv_weight, gan_kind=gan_kind,
            batch_size=batch_size, r1_gamma=r1_gamma, device=device, amp=amp,
            val_data=val_data, val_every=val_every, log_every=log_every,
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, seed=seed,
            data_range=data_range, grad_clip=grad_clip, callback=callback,
            progress=progress, opt_g=opt_g, opt_d=opt_d, scaler_g=scaler_g,
            scaler_d=scaler_d, gen=gen, config=config, fingerprint=fingerprint,
            history=history, window=window)


def _loop(*, generator, discriminator, content_loss, data, steps, adv_weight, gan_kind,
          batch_size, r1_gamma, device, amp, val_data, log_every, checkpoint,
          checkpoint_every, seed, data_range, grad_clip, callback, progress, opt_g, opt_d,
          scaler_g, scaler_d, gen, val_every, config, fingerprint, history,
          window) -> History:
    """The training loop of :func:`fit_adversarial` (arguments already checked, state
    restored); reads top to bottom like ``fit``'s."""
    start_step = history.steps_done

    clock = {"t0": time.perf_counter(), "seconds": history.seconds, "data": history.data_seconds,
             "val": 0.0}

    def update_clock() -> None:
        history.seconds = clock["seconds"] + time.perf_counter() - clock["t0"] - clock["val"]
        history.data_seconds = clock["data"]
        history.images_per_second = history.steps_done * batch_size / max(history.seconds,
                                                                           1e-9)

    def snapshot() -> None:
        update_clock()
        if checkpoint is None:
            return
        save_checkpoint(checkpoint, {
            "format": CHECKPOINT_FORMAT, "step": history.steps_done, "config": config,
            "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "scaler_g": scaler_g.state_dict(), "scaler_d": scaler_d.state_dict(),
            "rng": gen.get_state(), "window": window.state(), "history": history.to_dict(),
            "fingerprint": fingerprint,
        })

    def validate(step: int) -> None:
        if val_data is None:
            return
        tv = time.perf_counter()
        d_mode = discriminator.training
        for k, v in validate_model(generator, content_loss, val_data, device, amp,
                              data_range).items():
            history.val.setdefault(k, []).append(v)
        discriminator.train(d_mode)
        history.val_step.append(step)
        clock["val"] += time.perf_counter() - tv

    def reseed(step: int) -> None:
        s = step_seed(seed, 0, step)
        gen.manual_seed(s)
        torch.default_generator.manual_seed(s)
        if device.type == "cuda":
            torch.cuda.default_generators[device.index or 0].manual_seed(s)

    def guard(value: torch.Tensor, what: str, step: int, parts: dict, last: tuple) -> None:
        if not bool(torch.isfinite(value)):
            raise FloatingPointError(
                f"the {what} loss became {float(value.detach())} at step {step} (components "
                f"at that step: {parts}; last logged, at step {last[0]}: {last[1]}). "
                "Training stopped. Lower the learning rates or adv_weight, pass "
                "grad_clip=1.0, or try gan_kind='hinge' or r1_gamma > 0."
            )

    def update(loss: torch.Tensor, opt, scaler, params) -> None:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(opt)
        scaler.update()

    # --- the loop ------------------------------------------------------------------------
    bar = None
    if progress and start_step < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start_step, desc="adversarial training", leave=False)
    last_logged: tuple[int, dict] = (start_step, {})
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), DeferInterrupt() as interrupt:
        generator.train()
        discriminator.train()
        try:
            for step in range(start_step + 1, steps + 1):
                reseed(step)
                td = time.perf_counter()
                inputs, targets = data(batch_size, gen)
                inputs, targets = inputs.to(device), targets.to(device)
                clock["data"] += time.perf_counter() - td
                if step == start_step + 1:
                    check_batch(inputs, targets, data_range=data_range,
                                where=f"the batch of step {step}")

                # 1. discriminator: real vs the generator's (fixed) output
                discriminator.requires_grad_(True)
                with torch.no_grad(), autocast_for(device, amp):
                    fake = generator(inputs)
                if step == start_step + 1:
                    check_prediction(fake, targets)
                real = targets.float()
                if r1_gamma > 0:
                    real = real.detach().requires_grad_(True)
                with autocast_for(device, amp):
                    real_logits = discriminator(real)
                    fake_logits = discriminator(fake.float())
                d_loss = discriminator_loss(real_logits.float(), fake_logits.float(),
                                            kind=gan_kind)
                if r1_gamma > 0:
                    d_loss = d_loss + r1_penalty(real_logits.float(), real, gamma=r1_gamma)
                d_parts = {"d_loss": float(d_loss.detach()),
                           "d_real": float(real_logits.detach().float().mean()),
                           "d_fake": float(fake_logits.detach().float().mean())}
                guard(d_loss, "discriminator", step, d_parts, last_logged)
                update(d_loss, opt_d, scaler_d, discriminator.parameters())

                # 2. generator: content + adv_weight x adversarial, D frozen
                discriminator.requires_grad_(False)
                with autocast_for(device, amp):
                    pred = generator(inputs)
                content, parts = split_loss(content_loss(pred.float(), targets.float()))
                if adv_weight > 0:
                    with autocast_for(device, amp):
                        logits = discriminator(pred)
                    adv = generator_loss(logits.float(), kind=gan_kind)
                else:
                    adv = torch.zeros((), device=device)
                g_loss = content + adv_weight * adv
                parts = {**parts, "content": float(content.detach()),
                         "adversarial": float(adv.detach()), **d_parts}
                guard(g_loss, "generator", step, parts, last_logged)
                update(g_loss, opt_g, scaler_g, generator.parameters())
                discriminator.requires_grad_(True)
                history.steps_done = step  # both models now hold this step's update

                window.add(float(g_loss.detach()), parts)
                if step % log_every == 0 or step == steps:
                    mean, mean_parts = window.flush()
                    history.step.append(step)
                    history.loss.append(mean)
                    for k, v in mean_parts.items():
                        history.components.setdefault(k, []).append(v)
                    last_logged = (step, mean_parts)
                    if bar is not None:
                        bar.set_postfix(g=f"{mean:.4g}", d=f"{mean_parts['d_loss']:.3g}")
                if step % val_every == 0 or step == steps:
                    validate(step)
                if step % checkpoint_every == 0 or step == steps:
                    snapshot()
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    callback(step, generator, history)
                if interrupt.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            snapshot()  # the last completed step; resuming continues from it exactly
            if checkpoint is not None:
                print(f"Interrupted: saved step {history.steps_done} to {checkpoint}; call "
                      "fit_adversarial again with the same arguments to resume.",
                      file=sys.stderr)
            raise
        finally:
            discriminator.requires_grad_(True)
            if bar is not None:
                bar.close()
    update_clock()
    generator.eval()
    discriminator.eval()
    return history

"""Population training: networks of one architecture shape that see the same batches train
together as one batched computation over stacked parameters: the hand-written wide forward of
:mod:`gengap.train.wide` for sequential families (mlp, cnn, nin, vgg), else
``torch.func.functional_call`` under ``vmap``; autograd gives every member's gradient at once.

Runs may share a population when they differ only in :data:`PER_NETWORK` fields (learning rate
and its schedule, weight decay, momentum, target cross-entropy, checkpoints). Everything else,
the seed included, must be equal: the seed fixes the initialization *and* the data order and
augmentation, so a grid over ``lr x weight_decay x seed`` gives one population per seed. Each
network leaves the population when it reaches its target, diverges or runs out of steps, and its
result equals training it alone with :func:`gengap.train.fit` up to float rounding. Dropout draws
random masks that could not match a solo run's, so runs with dropout always train alone.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gengap.data import Splits
from gengap.device import resolve_device
from gengap.memory_reuse import reuse_large_blocks
from gengap.models import build_for
from gengap.specs import RunSpec
from gengap.train.batched_optim import BatchedOptimizer
from gengap.train.batches import EpochBatches, fails_on_one_example, has_batch_norm
from gengap.train.fused_cnn import (
    FusedSmallCNN,
    build_fault,
    small_cnn_depth,
    unavailable_reason,
)
from gengap.train.optimizers import make_optimizer
from gengap.train.schedules import lr_factor
from gengap.train.tracking import RunTracker, State, TrainResult, epoch_row
from gengap.train.wide import WideForward

PER_NETWORK = (
    "lr", "weight_decay", "momentum", "schedule", "lr_steps", "lr_gamma", "warmup_epochs",
    "target_ce", "checkpoints",
)
EVAL_ROWS = 16384  # networks x examples per evaluation chunk, to bound memory
# A training batch whose widest activation (all members) would exceed this many elements is
# taken in micro-batches, their gradients summed. See Population.micro_batch.
MICRO_BATCH_ELEMENTS = 1 << 21
MIN_MICRO_BATCH = 16


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide vmap's notice that global average pooling takes its generic (slower) path: known,
    and already weighed by the speed probe."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There is a performance drop because we have")
        yield


def population_key(run: RunSpec) -> str | None:
    """Runs with equal keys can train as one population; None for a run that must train alone."""
    if run.arch.dropout > 0:
        return None
    tree = run.model_dump(mode="json")
    for name in PER_NETWORK:
        del tree["train"][name]
    return json.dumps(tree, sort_keys=True)


def group_runs(runs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """Runs grouped by :func:`population_key`, in first-seen order (alone: groups of one)."""
    groups: dict[str, list[RunSpec]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(population_key(run) or f"alone-{i}", []).append(run)
    return list(groups.values())


def flat_leaves(stacks: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stacked parameters (``name -> (P, ...)``) copied into one tensor of shape (P, total),
    and each parameter as a view of it that autograd treats as a leaf. The batched optimizer
    then updates every parameter in a few whole-tensor operations: for 16 MLPs 40-100-100-10
    an SGD step measured 0.2 ms instead of 0.5 ms for their six tensors one by one (timed in
    isolation), on the per-step path where a population of small networks spends its time."""
    p = len(next(iter(stacks.values())))
    flat = torch.cat([v.detach().reshape(p, -1) for v in stacks.values()], 1)
    return flat, leaf_views(flat, {name: v.shape[1:] for name, v in stacks.items()})


def leaf_views(flat: torch.Tensor, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Each parameter (one network's shape in ``shapes``) as a leaf view of the rows of
    ``flat``, in the order of ``shapes``."""
    views, at = {}, 0
    for name, shape in shapes.items():
        size = shape.numel()
        views[name] = flat[:, at : at + size].view(len(flat), *shape).requires_grad_()
        at += size
    return views


class Population:
    """P networks in stacked form, trained in lockstep on shared minibatches."""

    def __init__(self, runs: Sequence[RunSpec], splits: Splits, device: str | torch.device,
                 micro_batch: int | None = None, fused: bool = True) -> None:
        """``device``: a torch device or its name (``auto`` too); ``micro_batch``: examples
        per part of a training batch (not with batch norm); None decides it on the first
        batch (:meth:`micro_batch`). ``fused``: train Small CNN Zoo networks with the
        compiled kernel of :mod:`gengap.train.fused_cnn` where it applies (False: always
        the wide forward and autograd; so does a given ``micro_batch``, the wide forward's
        part size)."""
        device = resolve_device(device)
        keys = {population_key(run) for run in runs}
        if None in keys or len(keys) != 1:
            raise ValueError("these runs cannot share a population (see population_key)")
        self.runs, self.device = list(runs), device
        if device.type == "cpu":
            reuse_large_blocks()
        models = []
        for run in runs:
            torch.manual_seed(run.seed)
            models.append(build_for(run.arch, splits).to(device))
        self.template = models[0]
        self.keys = list(self.template.state_dict())
        params, buffers = stack_module_state(models)
        self.flat, self.params = flat_leaves(params)
        self.buffers = buffers
        self.init_states = [self.state(i) for i in range(len(runs))]
        self.active = list(range(len(runs)))  # row i of the stacks is network active[i]
        spec = runs[0].train

        def hyper(name: str) -> torch.Tensor:
            return torch.tensor([getattr(r.train, name) for r in runs], device=device)

        self.optimizer = BatchedOptimizer(
            spec.optimizer, self.flat, hyper("momentum"), hyper("weight_decay")
        )

        self.wide = WideForward(self.template) if WideForward.supports(self.template) else None
        self.fused, _ = _kernel(self.template, device, fused and micro_batch is None)
        if micro_batch is not None and (micro_batch < 1 or has_batch_norm(self.template)):
            raise ValueError(f"no micro-batches of {micro_batch} here (positive sizes, and "
                             "none with batch norm, whose statistics are the batch's)")
        self._micro_batch = micro_batch  # None: decided on the first batch

        def one(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.template, (params, buffers), (x,))

        self.vmapped = vmap(one, in_dims=(0, 0, None))

    def forward(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Logits of every active network on the shared batch ``x``, shape (P, N, classes):
        the hand-written wide forward where the architecture has one, else ``vmap``."""
        if self.wide is not None:
            return self.wide(self.params, self.buffers, x, training)
        self.template.train(training)
        with _quiet():
            return self.vmapped(self.params, self.buffers, x)

    def state(self, row: int) -> State:
        """The state dict of the network in stack row ``row``, on the CPU."""
        stacks = {**self.params, **self.buffers}
        return {k: stacks[k][row].detach().to("cpu", copy=True).contiguous() for k in self.keys}

    def losses_and_gradient(
        self, xb: torch.Tensor, yb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each active network's mean cross-entropy on the batch, shape (P,) (detached), and
        the gradient of each network's loss in its own parameters, one row per network as
        :attr:`flat` holds them. Taken in micro-batches of :meth:`micro_batch` examples, each
        part's gradient weighted by its share of the batch and summed: the same gradient up to
        float rounding. The losses are the means over the whole batch's cross-entropies, as
        training alone takes them (a sum that overflows to inf there does here too). With
        the compiled kernel (:attr:`fused`), all of that in one call, example by example."""
        if self.fused is not None:
            ces, gradient = self.fused(self.flat, xb, yb, torch.get_num_threads())
            return ces.mean(1), gradient
        size = self.micro_batch(xb)
        parts: list[torch.Tensor] = []
        gradient: torch.Tensor | None = None
        for start in range(0, len(xb), size):
            ces = _cross_entropies(self.forward(xb[start : start + size], training=True),
                                   yb[start : start + size])
            loss = ces.mean(1)
            share = ces.shape[1] / len(xb)
            if share != 1.0:  # a part weighs by its share of the batch
                loss = loss * share
            with _quiet():
                grads = torch.autograd.grad(loss.sum(), list(self.params.values()))
            flat = torch.cat([g.reshape(len(g), -1) for g in grads], 1)
            gradient = flat if gradient is None else gradient.add_(flat)
            parts.append(ces.detach())
        assert gradient is not None  # a batch holds at least one example
        losses = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        return losses.mean(1), gradient

    def micro_batch(self, xb: torch.Tensor) -> int:
        """How many examples of a training batch like ``xb`` go through at once: the whole
        batch, unless the wide forward's widest activation (all members) would exceed
        :data:`MICRO_BATCH_ELEMENTS`, then the largest power of two (at least
        :data:`MIN_MICRO_BATCH`) under it. Activations that large run memory-bound: 16 Small
        CNN Zoo networks on 28x28 inputs at batch 512 stepped 1.2-1.5x faster in micro-batches
        of 32 through the wide forward (measured; the compiled kernel takes none). On the CPU
        only (a GPU wants large batches); never with batch norm, whose statistics are the
        whole batch's, nor with ``vmap``. Decided once, on the first batch, unless the
        population was built with its ``micro_batch``."""
        if self._micro_batch is None:
            self._micro_batch = 0
            if (self.device.type == "cpu" and self.wide is not None
                    and not has_batch_norm(self.template)):
                widest = self.wide.widest_activation(self.params, self.buffers, xb[:1])
                if widest * len(xb) > MICRO_BATCH_ELEMENTS:
                    fits = 1 << max(0, (MICRO_BATCH_ELEMENTS // max(widest, 1)).bit_length() - 1)
                    self._micro_batch = max(MIN_MICRO_BATCH, fits)
        return min(self._micro_batch or len(xb), len(xb))

    def step(self, gradient: torch.Tensor, lr: torch.Tensor, rows: torch.Tensor | None) -> None:
        """One optimizer step with ``gradient`` (:meth:`losses_and_gradient`) for the networks
        in stack ``rows`` (None: all); the others leave the population."""
        if rows is not None:
            self.keep(rows)
            gradient = gradient.index_select(0, rows)
        self.optimizer.step(self.flat, gradient, lr)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the networks in stack ``rows``."""
        self.flat = self.flat.index_select(0, rows)
        self.params = leaf_views(self.flat, {k: v.shape[1:] for k, v in self.params.items()})
        self.buffers = {k: v.index_select(0, rows) for k, v in self.buffers.items()}
        self.optimizer.keep(rows)
        self.active = [self.active[i] for i in rows.tolist()]

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> list[tuple[float, float]]:
        """(mean cross-entropy, accuracy) of each active network on ``(x, y)``, in eval mode."""
        p = len(self.active)
        chunk = max(1, EVAL_ROWS // p)
        loss_sum = torch.zeros(p, dtype=torch.float64, device=self.device)
        correct = torch.zeros(p, dtype=torch.int64, device=self.device)
        for start in range(0, len(x), chunk):
            xb, yb = x[start : start + chunk].to(self.device), y[start : start + chunk].to(
                self.device
            )
            logits = (self.forward(xb, training=False) if self.fused is None
                      else self.fused.logits(self.flat, xb, torch.get_num_threads()))
            loss_sum += _cross_entropies(logits, yb).double().sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
        return [(float(loss_sum[i]) / len(x), int(correct[i]) / len(x)) for i in range(p)]


def _cross_entropies(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each network's cross-entropy on each example, (P, N), from logits (P, N, classes).
    The wide forward's logits are feature-major (classes strided); read as (P, classes, N)
    they are contiguous, and PyTorch's log-softmax over that middle axis is several times
    faster than over a short last one (16 networks, 100 examples, 10 classes: forward and
    backward 191 us against 578 us, measured; the same values)."""
    if logits.stride(-1) != 1:
        return nn.functional.cross_entropy(logits.transpose(1, 2), y.expand(len(logits), -1),
                                           reduction="none")
    p, n = logits.shape[:2]
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(p),
                                       reduction="none").view(p, n)


def fit_population(
    runs: Sequence[RunSpec], splits: Splits, device: str | torch.device = "auto"
) -> list[TrainResult]:
    """Train ``runs`` (which must share a :func:`population_key`) as one population; return
    their results in order. Metrics as :func:`gengap.train.fit`'s; ``seconds`` is the
    population's wall time divided by its size, and ``population`` its size."""
    device = resolve_device(device)
    pop = Population(runs, splits, device)
    spec = runs[0].train
    batches = EpochBatches(splits.x_train, splits.y_train, spec, runs[0].seed, device,
                           merge_single=fails_on_one_example(
                               pop.template, splits.x_train[:1].to(device)))
    per_epoch = batches.steps_per_epoch
    trackers = [RunTracker(run.train, len(splits.x_train), per_epoch, len(splits.x_test))
                for run in runs]
    finals: dict[int, State] = {}
    steps, started = 0, time.perf_counter()
    for epoch in range(1, spec.max_epochs + 1):
        for xb, yb in batches.epoch():
            losses, gradient = pop.losses_and_gradient(xb, yb)
            values = losses.cpu().tolist()
            good = [i for i, v in enumerate(values) if trackers[pop.active[i]].check_loss(v)]
            for i in set(range(len(values))) - set(good):
                finals[pop.active[i]] = pop.state(i)
            if not good:
                pop.active = []
                break
            rows = None if len(good) == len(values) else torch.tensor(good, device=device)
            lr = torch.tensor(
                [runs[n].train.lr * lr_factor(runs[n].train, steps, per_epoch)
                 for n in (pop.active if rows is None else [pop.active[i] for i in good])],
                device=device,
            )
            pop.step(gradient, lr, rows)
            steps += 1
            for n in pop.active:
                trackers[n].steps = steps
            if spec.max_steps and steps >= spec.max_steps:
                break
        if not pop.active:
            break
        if not trackers[pop.active[0]].evaluates(epoch):  # one schedule: not per network
            for i, n in enumerate(pop.active):
                trackers[n].skip_epoch(epoch, lambda i=i: pop.state(i))
            continue
        train = pop.evaluate(splits.x_train, splits.y_train)
        test = pop.evaluate(splits.x_test, splits.y_test)
        staying = []
        for i, n in enumerate(pop.active):
            row = epoch_row(epoch, steps, train[i], test[i])
            if trackers[n].end_epoch(row, lambda i=i: pop.state(i)):
                finals[n] = pop.state(i)
            else:
                staying.append(i)
        if not staying:
            break
        if len(staying) < len(pop.active):
            pop.keep(torch.tensor(staying, device=device))
    for i, n in enumerate(pop.active):
        finals.setdefault(n, pop.state(i))
    seconds = (time.perf_counter() - started) / len(runs)
    results = []
    for n, tracker in enumerate(trackers):
        result = tracker.result(pop.init_states[n], finals[n], seconds)
        result.metrics["population"] = len(runs)
        results.append(result)
    return results


def population_path(run: RunSpec, splits: Splits, device: str | torch.device = "auto") -> str:
    """How a population of networks like ``run`` computes its steps here: ``compiled kernel``
    (:mod:`gengap.train.fused_cnn`), ``wide forward`` (:mod:`gengap.train.wide`; with why
    the kernel is not used where it would apply) or ``vmap``."""
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):  # building a network draws from torch's generator
        template = build_for(run.arch, splits)
    kernel, why_not = _kernel(template, device, warn=False)  # the reason is in the answer
    if kernel is not None:
        return "compiled kernel"
    if not WideForward.supports(template):
        return "vmap"
    return "wide forward" + (f"; the compiled kernel is unavailable: {why_not}" if why_not else "")


_WARNED: list[str] = []  # the kernel's absence is told once per process


def _kernel(template: nn.Module, device: torch.device, wanted: bool = True,
            warn: bool = True) -> tuple[FusedSmallCNN | None, str | None]:
    """The compiled kernel for a population of ``template`` on ``device``, or None and, where
    it would apply but is not used, why (``warn``: a build that failed is also told as a
    warning, once per process)."""
    if not wanted or device.type != "cpu" or small_cnn_depth(template) is None:
        return None, None
    kernel = FusedSmallCNN.for_template(template, device)
    if kernel is not None:
        return kernel, None
    why_not = unavailable_reason()
    if warn and build_fault() and not _WARNED:
        _WARNED.append(why_not or "")
        warnings.warn(f"the compiled kernel for Small CNN Zoo populations is unavailable "
                      f"({why_not}); they train through the slower wide forward",
                      RuntimeWarning, stacklevel=3)
    return None, why_not


def population_speedup(
    runs: Sequence[RunSpec], splits: Splits, device: str | torch.device = "auto", steps: int = 5
) -> float:
    """Measured training speed of ``runs`` as one population over one at a time (networks
    trained per second, ratio), from a few steps of each on the real shapes; 0 when the
    population cannot run (an operation without a batched form)."""
    device = resolve_device(device)
    spec = runs[0].train
    batches = EpochBatches(splits.x_train, splits.y_train, spec, runs[0].seed, device)
    xb, yb = next(iter(batches.epoch()))
    torch.manual_seed(runs[0].seed)
    model = build_for(runs[0].arch, splits).to(device)
    optimizer = make_optimizer(model.parameters(), spec)

    def solo_step() -> None:
        loss = nn.functional.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()

    try:
        pop = Population(runs, splits, device)
        lr = torch.tensor([r.train.lr for r in runs], device=device)

        def pop_step() -> None:
            losses, gradient = pop.losses_and_gradient(xb, yb)
            losses.cpu()
            pop.step(gradient, lr, None)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        solo, together = _time((solo_step, pop_step), steps)
    except (RuntimeError, NotImplementedError, ValueError):
        return 0.0
    return solo * len(runs) / together


def _time(steps: Sequence[Callable[[], None]], repeats: int) -> list[float]:
    """The fastest of ``repeats`` timed calls of each step, taken in turns so that a change in
    the machine's load touches both alike (other processes only add time)."""
    for step in steps:
        step()  # warm-up: allocations, kernel selection
    best = [math.inf] * len(steps)
    for _ in range(repeats):
        for i, step in enumerate(steps):
            started = time.perf_counter()
            step()
            best[i] = min(best[i], time.perf_counter() - started)
    return best

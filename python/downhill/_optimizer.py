"""The seed's interfaces on PyTorch tensors: build(), Optimizer, minimize()."""

import inspect

import torch

from . import _data, _downhill, _settings


def _monitor_caller(function):
    """`function` called with the batch, or with nothing when it takes no argument."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return function
    takes_any = any(p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                    for p in parameters)
    return function if takes_any else (lambda *batch: function())


def _with_monitors(loss, monitors):
    """The loss with the seed's `monitors` added: (name, callable) pairs or a dict, each callable
    given the batch (or nothing) and returning a scalar."""
    if not monitors:
        return loss
    pairs = list(monitors.items()) if isinstance(monitors, dict) else list(monitors)
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not callable(pair[1]):
            raise TypeError("monitors must be (name, callable) pairs or a dict of them; a "
                            "callable takes the batch's tensors (or nothing) and returns a scalar")
    callers = [(name, _monitor_caller(function)) for name, function in pairs]

    def evaluate(*batch):
        result = loss(*batch)
        if isinstance(result, tuple):
            value, named = result
            named = dict(named)
        else:
            value, named = result, {}
        with torch.no_grad():
            for name, caller in callers:
                named[name] = caller(*batch)
        return value, named

    return evaluate


def _entries(params, start):
    """(name, tensor) pairs from a module, a dict, pairs or tensors (named paramK from
    `start`)."""
    if isinstance(params, torch.nn.Module):
        return list(params.named_parameters())
    if isinstance(params, torch.Tensor):
        params = [params]
    if isinstance(params, dict):
        params = list(params.items())
    entries = []
    for item in params:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            if not isinstance(item[1], torch.Tensor):
                raise TypeError(f"parameter '{item[0]}' must be a torch.Tensor, not "
                                f"{type(item[1]).__name__}")
            entries.append(item)
        elif isinstance(item, torch.Tensor):
            entries.append((f"param{start + len(entries)}", item))
        else:
            raise TypeError("params must be a torch.nn.Module, a dict of name: tensor, a list of "
                            "tensors or (name, tensor) pairs, or a list of group dicts "
                            f"{{'params': ..., setting: value}}; got a {type(item).__name__}")
    return entries


def _groups(params, settings, where):
    """The library's groups from `params`: [(entries, settings, frozen), ...]. A list of dicts
    is PyTorch's parameter groups, each {'params': ..., setting: value, 'frozen': bool};
    each group's settings are the optimizer's changed by its own (the first group not frozen
    comes first, and its settings are merged into the optimizer's, so the others set them
    back)."""
    if not (isinstance(params, (list, tuple)) and params and isinstance(params[0], dict)):
        return [(_entries(params, 0), {}, False)], settings
    groups, count = [], 0
    first, original = None, settings
    for group in params:
        group = dict(group)
        if "params" not in group:
            raise ValueError("a parameter group needs 'params'")
        entries = _entries(group.pop("params"), count)
        count += len(entries)
        frozen = bool(group.pop("frozen", False))
        own = _settings.normalize(group, where)
        if first is None and not frozen:
            first = own
            settings = {**settings, **own}
            groups.append((entries, {}, False))
        else:
            groups.append((entries, own, frozen))
    if first is None:
        raise ValueError("every parameter group is frozen: nothing to optimize")
    # The library's first group is the optimizer's own: the first group not frozen goes first.
    lead = next(index for index, group in enumerate(groups) if not group[2])
    groups.insert(0, groups.pop(lead))
    if first:
        # The first group's own values became the optimizer's: a later group that does not set
        # one of them gets the value the optimizer had without them.
        base = _settings.options(original)
        for index, (entries, own, frozen) in enumerate(groups):
            if index and not frozen:
                groups[index] = (entries, {**{name: base.get(name) for name in first}, **own},
                                 frozen)
    return groups, settings


class Optimizer:
    """An optimizer made by downhill.build(): it updates the parameter tensors in place.

    Its calls are the seed's, on PyTorch tensors:

      * iterate(train, valid=None, **settings): the loop, a generator of (train_monitors,
        valid_monitors) dicts, one pair per pass; `break` leaves the parameters as they are.
      * minimize(train, valid=None, **settings): the loop to its end; the parameters are then
        the best validation's; returns the last pair (and .last_run).
      * step(batch), evaluate(data), apply(grads), change_options(**settings),
        save_checkpoint(path) / load_checkpoint(path), state(), add_callback(callback).

    Data is a downhill.Dataset, a list of tensors / arrays (split into batches of the
    batch_size setting), a list of batches, or a callable returning a batch.
    """

    def __init__(self, algo, loss, params, settings, callbacks=()):
        self._algo = algo
        self._loss = loss
        self._settings = settings
        self._engine = None
        self._callbacks = list(callbacks)
        _settings.options(settings).validate()
        if params is not None:
            self._build(params)
        elif loss is None:
            raise ValueError("build() needs params when it has no loss (an apply()-only "
                             "optimizer)")

    def _build(self, params):
        groups, settings = _groups(params, self._settings, "build")
        self._engine = _downhill._build(self._algo, self._loss, groups,
                                        _settings.options(settings))
        for callback in self._callbacks:
            self._engine.add_callback(callback)

    def _discover(self, batch):
        """Builds with the leaves of the loss's graph on `batch` (build() without params)."""
        result = self._loss(*batch)
        value = result[0] if isinstance(result, tuple) else result
        found = _downhill.discover_params(value)
        if not found:
            raise ValueError("the loss depends on no tensor that requires grad: give params, or "
                             "make the parameters with requires_grad=True")
        self._build(found)

    def _engine_for(self, batch=None, data=None):
        if self._engine is None:
            if batch is None:
                if data is None:
                    raise RuntimeError("this optimizer finds its parameters in the loss's graph: "
                                       "call step(), iterate(), minimize() or evaluate() first")
                batch = data.peek()
            self._discover(batch)
        return self._engine

    def _dataset(self, data, name, settings):
        merged = {**self._settings, **settings}
        options = _settings.options({"algo": self._algo, **merged}).with_algorithm_defaults()
        batch_size = 0 if options.get("full_batch") else options.get("batch_size")
        batches = options.get("train_batches" if name == "train" else "valid_batches")
        return _data.as_dataset(data, name, batch_size, batches)

    @property
    def name(self):
        """The algorithm's display name, e.g. 'RMSProp'."""
        return self._engine_for().name

    @property
    def params(self):
        """The parameters as (name, tensor) pairs, the tensors the caller's."""
        return self._engine_for().params

    @property
    def options(self):
        """Every setting's value, by name, as a dict."""
        options = self._engine_for().options
        return {row["name"]: options.get(row["name"]) for row in _settings.TABLE}

    @property
    def last_run(self):
        """The latest run: best (the best validation's monitors), best_pass, validations,
        best_validation, passes, updates, loss_evaluations, gradient_evaluations,
        gradient_norm, stop (why it stopped) and stop_detail."""
        return self._engine_for().last_run

    @property
    def update_count(self):
        """Updates applied so far (Adam's t)."""
        return self._engine_for().update_count

    @property
    def place(self):
        """(rank, world_size): (0, 1) unless the optimizer trains data-parallel."""
        return self._engine_for().place

    def iterate(self, train, valid=None, **settings):
        """The loop: yields (train_monitors, valid_monitors) dicts, one pair per pass. It
        validates every validate_every passes, keeps the best parameters and stops when
        patience runs out, at max_passes / max_steps, on a tolerance, at Ctrl-C or when a
        callback asks (then the best parameters are restored); leaving it with `break` keeps
        the parameters as they are. `settings` change this run and those after it."""
        settings = _settings.normalize(settings, "iterate")
        train = self._dataset(train, "train", settings)
        valid = self._dataset(valid, "valid", settings)
        engine = self._engine_for(data=train)
        run = engine.iterate(train, valid, settings)
        try:
            yield from run
        finally:
            run.close()

    def minimize(self, train, valid=None, **settings):
        """Runs iterate() to its end and returns its last (train_monitors, valid_monitors) pair;
        the parameters are then the best validation's, and .last_run says how it went."""
        settings = _settings.normalize(settings, "minimize")
        train = self._dataset(train, "train", settings)
        valid = self._dataset(valid, "valid", settings)
        engine = self._engine_for(data=train)
        return MinimizeResult(engine.minimize(train, valid, settings), engine.last_run, self)

    def evaluate(self, data):
        """The monitors averaged over one pass of `data` (weighted by samples); no update."""
        data = self._dataset(data, "valid", {})
        return self._engine_for(data=data).evaluate(data)

    def step(self, batch):
        """One mini-batch (a tensor or a sequence of tensors / arrays): evaluates the loss,
        differentiates it and applies the update; returns the batch's monitors."""
        batch = _data.as_batch(batch)
        return self._engine_for(batch=batch).step(batch)

    def apply(self, grads, hessian_vector_products=None):
        """Applies one update from gradients you computed, one per parameter in the order of
        params (None for a frozen one). Returns False, changing nothing, when a gradient holds
        a NaN or an infinity or the update would write one."""
        return self._engine_for().apply(list(grads), hessian_vector_products)

    def change_options(self, group=None, **settings):
        """Changes settings between updates (of parameter group `group` only, when given);
        checked first, nothing changes on an error."""
        settings = _settings.normalize(settings, "change_options")
        self._engine_for().change_options(settings, group)

    def add_callback(self, callback):
        """Adds a downhill.Callback to the runs that start from now on."""
        if self._engine is None:
            self._callbacks.append(callback)
        else:
            self._engine.add_callback(callback)

    def remove_callback(self, callback):
        """Takes a callback added before out of the runs that start from now on."""
        if self._engine is None:
            self._callbacks.remove(callback)
        else:
            self._engine.remove_callback(callback)

    def state(self):
        """Every state tensor of the algorithm and momentum, named 'PARAM.SLOT'; they share
        storage with the live state."""
        return self._engine_for().state()

    def set_params(self, values):
        """Copies `values` into the parameters (same count, shapes and dtypes)."""
        self._engine_for().set_params(list(values))

    def restore_best(self):
        """Copies the parameters of the best validation back."""
        self._engine_for().restore_best()

    def save_checkpoint(self, path, train=None, valid=None):
        """Writes everything needed to continue this run to `path`, atomically; the C++
        library reads the same file."""
        self._engine_for().save_checkpoint(str(path), train, valid)

    def load_checkpoint(self, path):
        """Loads a checkpoint written by save_checkpoint() (here or in C++)."""
        self._engine_for().load_checkpoint(str(path))

    def __repr__(self):
        if self._engine is None:
            return f"downhill.Optimizer({self._algo!r}, parameters not found yet)"
        return (f"downhill.Optimizer({self._engine.name!r}, "
                f"{len(self._engine.params)} parameters)")


class MinimizeResult(tuple):
    """The (train_monitors, valid_monitors) pair of minimize(), with the run's summary as
    .last_run and the optimizer as .optimizer."""

    def __new__(cls, pair, last_run, optimizer):
        result = super().__new__(cls, pair)
        result.last_run = last_run
        result.optimizer = optimizer
        return result


def build(algo, loss=None, params=None, monitors=None, callbacks=None, **settings):
    """Makes an optimizer of algorithm `algo` (any case: 'sgd', 'nag', 'rprop', 'rmsprop',
    'adagrad', 'adadelta', 'esgd', 'adam', 'adamw', 'lion', 'lbfgs', or a registered name).

    loss: a callable, loss(*batch) -> a scalar tensor or (loss, {name: scalar}); None for an
        optimizer used only through apply().
    params: the tensors to optimize (updated in place): a torch.nn.Module, a dict of name:
        tensor, a list of tensors or (name, tensor) pairs, or PyTorch-style groups
        [{'params': ..., 'learning_rate': 0.01}, {'params': ..., 'frozen': True}]. None: the
        leaves requiring grad found in the loss's autograd graph on the first batch.
    monitors: the seed's monitors, (name, callable) pairs or a dict: each callable takes the
        batch (or nothing) and returns a scalar, reported beside the loss.
    callbacks: downhill.Callback objects for the loop.
    settings: any setting of the table by name (downhill.SETTINGS lists them, with aliases
        and beta1 / beta2); an unknown one is a TypeError naming the closest.
    """
    settings = _settings.normalize(settings, "build")
    return Optimizer(algo, None if loss is None else _with_monitors(loss, monitors), params,
                     settings, callbacks or ())


def minimize(loss, train, valid=None, params=None, algo="rmsprop", monitors=None,
             monitor_gradients=False, callbacks=None, **settings):
    """Minimizes `loss` over `params` on `train`, validating on `valid` (else on `train`):
    builds `algo` and runs the loop to its end (see build() and Optimizer.iterate()). The
    parameters are then the best validation's. Returns the last (train_monitors,
    valid_monitors) dicts, with .last_run (the best result, why it stopped) and .optimizer.

    train, valid: a downhill.Dataset, a list of tensors / arrays (batches of batch_size), a
        list of batches, or a callable returning a batch.
    """
    opt = build(algo, loss, params=params, monitors=monitors, callbacks=callbacks,
                monitor_gradients=monitor_gradients, **settings)
    return opt.minimize(train, valid)

"""Drop-in replacements for torch.optim, backed by downhill's fused C++ updates.

    opt = downhill.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

Each class is a torch.optim.Optimizer: parameter groups, state_dict() / load_state_dict(),
torch.optim.lr_scheduler schedulers (through param_groups[i]['lr']) and
DistributedDataParallel work as with torch.optim. PyTorch's argument names (lr, betas, eps,
weight_decay, momentum, nesterov, alpha, rho, etas, step_sizes) are accepted beside
downhill's settings (learning_rate, rms_halflife, max_gradient_norm, ...), and each class
takes PyTorch's defaults where PyTorch has the algorithm. The update is downhill's
(docs/guide.md's mathematics): weight decay is always decoupled (AdamW's), and momentum is
downhill's v <- mu v - lr u, which is PyTorch's at a constant learning rate.

A parameter that does not require grad when the first step() is taken is frozen: never
updated. Every other parameter needs a gradient at each step().
"""

import torch

from . import _downhill, _settings

# PyTorch's names of downhill's settings: name -> (setting(s), conversion).
_TORCH_NAMES = {
    "lr": lambda v: {"learning_rate": v},
    "eps": lambda v: {"rms_regularizer": v},
    "betas": lambda v: {"beta1_halflife": _settings.halflife_of_beta(v[0]),
                        "beta2_halflife": _settings.halflife_of_beta(v[1])},
    "alpha": lambda v: {"rms_halflife": _settings.halflife_of_beta(v)},
    "rho": lambda v: {"rms_halflife": _settings.halflife_of_beta(v)},
    "etas": lambda v: {"rprop_decrease": v[0], "rprop_increase": v[1]},
    "step_sizes": lambda v: {"rprop_min_step": v[0], "rprop_max_step": v[1]},
}
# downhill's names that a group dict keeps under PyTorch's (so that schedulers find 'lr').
_GROUP_KEYS = {"learning_rate": "lr", "rms_regularizer": "eps"}
# PyTorch arguments downhill accepts only at the value that changes nothing.
_ONLY = {"foreach": (None, False, True), "maximize": (False,), "amsgrad": (False,),
         "dampening": (0, 0.0), "centered": (False,), "capturable": (False,),
         "differentiable": (False,), "fused": (None, False), "lr_decay": (0, 0.0),
         "initial_accumulator_value": (0, 0.0)}
_ABSENT = object()
# Keys a group may hold that are not settings (added by schedulers and other tools).
_IGNORED = {"params", "initial_lr", "name"} | set(_ONLY)


def _to_settings(group, where):
    """downhill's settings of a group dict (its PyTorch names converted)."""
    settings = {}
    for key, value in group.items():
        if key in _IGNORED:
            continue
        if key in _TORCH_NAMES:
            settings.update(_TORCH_NAMES[key](value))
        elif key in _settings.DERIVED:
            settings[key + "_halflife"] = _settings.halflife_of_beta(value)
        else:
            settings.update(_settings.normalize({key: value}, where))
    return settings


class Optimizer(torch.optim.Optimizer):
    """A torch.optim.Optimizer running downhill's algorithm `algo` ('sgd', 'nag', 'rprop',
    'rmsprop', 'adagrad', 'adadelta', 'esgd', 'adam', 'adamw', 'lion' or a registered name).

    Optimizer(params, algo='adam', lr=1e-3, **settings): params as torch.optim takes them
    (tensors or group dicts); settings by PyTorch's names or downhill's (downhill.SETTINGS).
    """

    algo = None
    #: The defaults of the class, by the names its group dicts use.
    torch_defaults = {}

    def __init__(self, params, algo=None, **settings):
        algo = algo or type(self).algo
        if algo is None:
            raise TypeError("downhill.optim.Optimizer needs algo=... (for example 'adam')")
        where = type(self).__name__
        defaults = dict(self.torch_defaults)
        for name, value in settings.items():
            if name in _ONLY:
                if value not in _ONLY[name]:
                    raise ValueError(f"{where}: {name}={value!r} is not supported by downhill "
                                     f"(allowed: {', '.join(map(repr, _ONLY[name]))})")
                continue
            if name not in _TORCH_NAMES and name not in _GROUP_KEYS and name not in (
                    _settings.NAMES):
                raise _settings.unknown(name, where,
                                        _settings.NAMES + list(_TORCH_NAMES) + list(_ONLY))
            defaults[_GROUP_KEYS.get(name, name)] = value
        _settings.options({"algo": algo, **_to_settings(defaults, where)}).validate()
        self._algo = algo
        self._engine = None
        super().__init__(params, defaults)

    # --- the engine, made at the first step from the groups as they are then ---

    def _build(self):
        groups, order, numbers = [], [], []
        where = type(self).__name__
        for group in self.param_groups:
            settings = _to_settings(group, where)
            trainable = [p for p in group["params"] if p.requires_grad]
            frozen = [p for p in group["params"] if not p.requires_grad]
            number = None
            if trainable:
                number = len(groups)
                groups.append((self._named(trainable, len(order)), settings, False))
                order.extend(trainable)
            if frozen:
                groups.append((self._named(frozen, len(order)), {}, True))
                order.extend(frozen)
            numbers.append(number)
        if not any(number is not None for number in numbers):
            raise ValueError(f"{where}: no parameter requires grad: nothing to optimize")
        first = next(index for index, number in enumerate(numbers) if number is not None)
        if groups[0][2]:  # the library's first group must be a trainable one: move it first
            moved = groups.pop(numbers[first])
            groups.insert(0, moved)
            numbers = [None if n is None else (0 if n == numbers[first] else
                                               n + (1 if n < numbers[first] else 0))
                       for n in numbers]
            order = [p for entries, _, _ in groups for _, p in entries]
        options = _settings.options({"algo": self._algo, **groups[0][1]})
        self._engine = _downhill._build(self._algo, None, groups, options)
        self._order = [p for entries, _, frozen in groups for _, p in entries]
        self._frozen = [frozen for entries, _, frozen in groups for _ in entries]
        self._numbers = numbers
        self._synced = [self._hyperparameters(group) for group in self.param_groups]

    @staticmethod
    def _named(tensors, start):
        return [(f"param{start + k}", tensor) for k, tensor in enumerate(tensors)]

    @staticmethod
    def _hyperparameters(group):
        return {key: value for key, value in group.items() if key != "params"}

    def _sync(self):
        """Hands changes of the group dicts (a scheduler's lr) to the engine."""
        where = type(self).__name__
        for index, group in enumerate(self.param_groups):
            synced = self._synced[index]
            if synced is not None and len(group) == len(synced) + 1:
                for key, value in group.items():
                    if key != "params" and synced.get(key, _ABSENT) is not value:
                        break
                else:
                    continue  # every setting is the very object handed over last time
            current = self._hyperparameters(group)
            if current == synced:
                self._synced[index] = current
                continue
            changed = {key: value for key, value in current.items()
                       if synced is None or key not in synced or synced[key] != value}
            if self._numbers[index] is not None:
                self._engine.change_options(_to_settings(changed, where), self._numbers[index])
            self._synced[index] = current

    def _gradients(self):
        if not any(self._frozen):
            grads = [param.grad for param in self._order]
            if not any(grad is None for grad in grads):  # (`None in grads` would call __eq__)
                return grads
        grads = []
        for index, (param, frozen) in enumerate(zip(self._order, self._frozen)):
            if frozen:
                grads.append(None)
            elif param.grad is None:
                raise ValueError(
                    f"{type(self).__name__}: parameter {index} (shape {list(param.shape)}) has no "
                    "gradient (.grad is None); downhill updates every parameter at each step: "
                    "set requires_grad=False on those you do not train before the first step()")
            else:
                grads.append(param.grad)
        return grads

    def step(self, closure=None):
        """One update from the parameters' .grad; `closure` (optional) re-evaluates the model
        and returns the loss, as torch.optim's. Returns the closure's loss."""
        # torch.profiler sees the step under torch.optim's label; otherwise the label costs
        # nothing. (The library's update records no autograd graph: no torch.no_grad needed.)
        if torch.autograd._profiler_enabled():
            with torch.autograd.profiler.record_function(
                    f"Optimizer.step#{type(self).__name__}.step"):
                return self._step(closure)
        return self._step(closure)

    # torch.optim.Optimizer wraps a subclass's step() in a profiler label at every call unless
    # it is marked as labelled already; step() labels itself when a profiler runs.
    step.hooked = True

    def _step(self, closure):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self._engine is None:
            self._build()
        if len(self.param_groups) != len(self._synced):
            raise RuntimeError(f"{type(self).__name__}: add_param_group after the first step() "
                               "is not supported; make a new optimizer")
        self._sync()
        self._engine.apply(self._gradients())
        return loss

    # --- state ---

    def state_dict(self):
        """torch.optim's state_dict: 'state' holds each parameter's state tensors by slot
        (copies), and the update counter as 'step'; 'param_groups' the groups' settings."""
        packed = super().state_dict()
        if self._engine is not None:
            position = {id(p): k for k, p in enumerate(
                p for group in self.param_groups for p in group["params"])}
            names = {f"param{k}": position[id(p)] for k, p in enumerate(self._order)}
            state = {}
            for key, tensor in self._engine.state().items():
                name, slot = key.rsplit(".", 1)
                state.setdefault(names[name], {})[slot] = tensor.clone()
            for index in set(names.values()):
                state.setdefault(index, {})["step"] = self._engine.update_count
            packed["state"] = state
        return packed

    def load_state_dict(self, state_dict):
        """Loads what state_dict() returned: the groups' settings and the state, bit for bit."""
        super().load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        saved = state_dict.get("state", {})
        if self._engine is None:
            self._build()
        self._synced = [None] * len(self.param_groups)  # every group's settings handed over
        self._sync()
        if not saved:
            return
        position = {id(p): k for k, p in enumerate(
            p for group in self.param_groups for p in group["params"])}
        tensors, count = [], 0
        for k, param in enumerate(self._order):
            entry = saved.get(position[id(param)], saved.get(str(position[id(param)]), {}))
            for slot, tensor in entry.items():
                if slot == "step":
                    count = int(tensor)
                else:
                    tensors.append((f"param{k}.{slot}", tensor))
        self._engine.load_state(tensors, count)

    @property
    def update_count(self):
        """Updates applied so far."""
        return 0 if self._engine is None else self._engine.update_count


def _algorithm(name, algo, defaults, doc):
    cls = type(name, (Optimizer,), {"algo": algo, "torch_defaults": defaults, "__doc__": doc})
    cls.__module__ = __name__
    return cls


SGD = _algorithm("SGD", "sgd", {"lr": 0.01, "momentum": 0.0, "nesterov": False,
                                "weight_decay": 0.0},
                 "SGD(params, lr=0.01, momentum=0, nesterov=False, weight_decay=0, ...): "
                 "stochastic gradient descent, with downhill's momentum.")
NAG = _algorithm("NAG", "nag", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
                 "NAG(params, lr=0.01, momentum=0.9, ...): Nesterov's accelerated gradient.")
RProp = _algorithm("RProp", "rprop", {"lr": 0.01, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50)},
                   "RProp(params, lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50), ...): "
                   "resilient backpropagation (downhill's: lr scales the step).")
RMSProp = _algorithm("RMSProp", "rmsprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-8,
                                             "weight_decay": 0.0},
                     "RMSProp(params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, ...): "
                     "downhill's RMSProp (docs/guide.md's mathematics).")
ADAGRAD = _algorithm("ADAGRAD", "adagrad", {"lr": 0.01, "eps": 1e-10, "weight_decay": 0.0},
                     "ADAGRAD(params, lr=0.01, eps=1e-10, weight_decay=0, ...).")
ADADELTA = _algorithm("ADADELTA", "adadelta", {"lr": 1.0, "rho": 0.9, "eps": 1e-6,
                                                "weight_decay": 0.0},
                      "ADADELTA(params, rho=0.9, eps=1e-6, weight_decay=0, ...): ADADELTA has "
                      "no learning rate (lr is accepted and ignored).")
Adam = _algorithm("Adam", "adam", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                   "weight_decay": 0.0},
                  "Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, ...): "
                  "weight decay, when given, is decoupled (AdamW's).")
AdamW = _algorithm("AdamW", "adamw", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                      "weight_decay": 1e-2},
                   "AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2): "
                   "torch.optim.AdamW's update.")
Lion = _algorithm("Lion", "lion", {"lr": 1e-4, "weight_decay": 0.0},
                  "Lion(params, lr=1e-4, weight_decay=0, ...): the sign of an interpolated "
                  "momentum (downhill's settings lion_beta1, lion_beta2).")


class ESGD(Optimizer):
    """ESGD(params, lr=..., **settings): equilibrated SGD. It needs Hessian-vector products:
    step(closure) with a closure that returns the loss without calling backward() (or calls
    loss.backward(create_graph=True)); ESGD differentiates it itself and computes H·r for a
    fresh random r."""

    algo = "esgd"
    torch_defaults = {"lr": 0.01}

    def _step(self, closure):
        if closure is None:
            raise RuntimeError("ESGD.step needs a closure that returns the loss (ESGD computes "
                               "Hessian-vector products from its graph)")
        if self._engine is None:
            self._build()
        self._sync()
        params = [p for p, frozen in zip(self._order, self._frozen) if not frozen]
        with torch.enable_grad():
            loss = closure()
            if all(p.grad is not None and p.grad.requires_grad for p in params):
                grads = [p.grad for p in params]
            else:
                grads = torch.autograd.grad(loss, params, create_graph=True)
            probes = [torch.randn_like(p) for p in params]
            products = torch.autograd.grad(grads, params, probes)
        grads = [g.detach() for g in grads]
        for p, g in zip(params, grads):
            p.grad = g
        full_grads, full_products, k = [], [], 0
        for frozen in self._frozen:
            if frozen:
                full_grads.append(None)
                full_products.append(None)
            else:
                full_grads.append(grads[k])
                full_products.append(products[k])
                k += 1
        with torch.no_grad():
            self._engine.apply(full_grads, full_products)
        return loss


__all__ = ["Optimizer", "SGD", "NAG", "RProp", "RMSProp", "ADAGRAD", "ADADELTA", "Adam",
           "AdamW", "Lion", "ESGD"]

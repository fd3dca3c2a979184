"""downhill: minimizes scalar loss functions of PyTorch tensors (docs/guide.md, "From Python").

The seed's three interfaces, backed by downhill's C++ engine:

    downhill.minimize(loss, train, ...)          # one call
    opt = downhill.build(algo, loss, params)      # a loop you drive:
    for train_monitors, valid_monitors in opt.iterate(train): ...
    opt.apply(grads)                              # raw updates

and downhill.optim, drop-in torch.optim optimizers. Log lines go to logging.getLogger(
"downhill"); errors are ValueError / TypeError / RuntimeError / downhill.DivergenceError
with the library's messages.
"""

from . import _downhill, _settings
from ._data import Dataset
from ._optimizer import MinimizeResult, Optimizer, build, minimize
from ._settings import NAMES as SETTINGS
from ._settings import TABLE as SETTINGS_TABLE

Callback = _downhill.Callback
RunView = _downhill.RunView
DivergenceError = _downhill.DivergenceError
current_phase = _downhill.current_phase
algorithm_names = _downhill.algorithm_names
torchrun_place = _downhill.torchrun_place

from . import optim  # noqa: E402  (after the names it uses)

__all__ = ["minimize", "build", "Dataset", "Optimizer", "MinimizeResult", "Callback", "RunView",
           "DivergenceError", "current_phase", "algorithm_names", "torchrun_place", "SETTINGS",
           "SETTINGS_TABLE", "optim"]

_SETTINGS_DOC = "\n\n    Settings (downhill's settings table):\n" + _settings.describe()
build.__doc__ += _SETTINGS_DOC
minimize.__doc__ += _SETTINGS_DOC

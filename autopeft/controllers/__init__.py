"""Controllers: propose candidates (ask), learn from finished trials (tell).

    from autopeft.controllers import make_controller
    ctrl = make_controller("tpe", bound_space, seed=0)          # controllers/tpe.yaml
    ctrl = make_controller("my_preset.yaml", bound_space, seed=0, max_trials=50)

Shipped: random, tpe, motpe and nsga2 (Pareto search over metric, params_ratio,
flops_ratio), lstm (an LSTM policy trained against a reward model of the trials), pbt
(population based training with warm starts).
Importing this package loads numpy only; optuna and torch load with the controller that
needs them. The resume rule is in autopeft.controllers.base.
"""
from autopeft.controllers.base import (
    INFEASIBLE_PENALTY,
    Controller,
    ControllerStateError,
    objectives_of,
    reward_of,
)
from autopeft.controllers.presets import (
    CONTROLLERS,
    Preset,
    controller_class,
    load_preset,
    make_controller,
)
from autopeft.settings import Setting

__all__ = [
    "CONTROLLERS",
    "INFEASIBLE_PENALTY",
    "Controller",
    "ControllerStateError",
    "Preset",
    "Setting",
    "controller_class",
    "load_preset",
    "make_controller",
    "objectives_of",
    "reward_of",
]

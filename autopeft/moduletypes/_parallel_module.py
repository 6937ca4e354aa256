"""torch modules of our own (imported only when a model is built: this file imports torch)."""
from __future__ import annotations

from typing import Any

import torch
from transformers.activations import get_activation


class ParallelFFNAdapter(torch.nn.Module):
    """s * up(act(down(x))), added to the FFN output of its layer (He et al. 2022).

    Its hooks are bound methods, so a model holding it can be copied and pickled.
    """

    def __init__(self, hidden: int, size: int, activation: str, scaling: float) -> None:
        super().__init__()
        self.down = torch.nn.Linear(hidden, size)
        self.act = get_activation(activation)
        self.up = torch.nn.Linear(size, hidden)
        self.scaling = scaling
        self._x: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x))) * self.scaling

    # BERT splits the FFN (intermediate -> output.dense): remember its input, add at its end
    def remember_input(self, module: Any, args: tuple) -> None:
        self._x = args[0]

    def add_to_output(self, module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x, self._x = self._x, None
        return output + self(x)

    # GPT-2 / Llama `mlp`: one module from the FFN input to the FFN output
    def add_from_input(self, module: Any, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + self(args[0])

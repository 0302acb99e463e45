"""What a job's methods are called where people read them: the CLI's comparison table
and the verdict sentence (the dashboard's results.js names them the same way).

A name says how the model was made to its size (by its own rank search at the
tolerance, or to LoRITa's size) and, when it was fine-tuned after that, for how long:
every method may be fine-tuned, so a name without "+ fine-tune" means it was not.
Torch-free, so the CLI can name methods without importing the engine.
"""

from __future__ import annotations

NAMES = {
    "lorita": "LoRITa",
    "plain": "plain N=1, truncated (own search)",
    "plain+finetune": "plain N=1, truncated (LoRITa's size)",
    "pruning": "Torch-Pruning (LoRITa's size)",
}


def method_name(
    method: str, finetune_epochs: int = 0, *, epochs_shown: bool = True, factor: int | None = None
) -> str:
    """The method's name, with "+ fine-tune (K ep)" when it was fine-tuned for K epochs
    (just "+ fine-tune" with ``epochs_shown=False``); LoRITa's with its N when
    ``factor`` is given."""
    name = NAMES.get(method, method)
    if method == "lorita" and factor is not None:
        name = f"{name} N={factor}"
    if not finetune_epochs:
        return name
    return f"{name} + fine-tune ({finetune_epochs} ep)" if epochs_shown else f"{name} + fine-tune"


# With the user's weights, the N=1 model every comparison starts from is the user's
# model trained (as N=1) by the job's recipe: what tuning it without LoRITa gives.
PLAIN_FROM_YOURS = ", from your model trained with the same recipe"


def reference_name(from_user_model: bool) -> str:
    """The name of the uncompressed N=1 model the comparisons start from."""
    return (
        "plain N=1 from your model, uncompressed" if from_user_model else "plain N=1, uncompressed"
    )

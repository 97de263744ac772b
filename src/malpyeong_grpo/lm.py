"""Language-model scoring shared by the stages: teacher-forced log-probs of continuations in left-padded batches
(``labels`` scores a gold answer after each candidate rule, ``predict`` scores each candidate answer sentence)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Token id rows as one left-padded (ids, attention mask) pair of long tensors."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


def model_device(model: Any) -> Any:
    """The device of the model's parameters (CPU for a model without any)."""
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def continuation_logprobs(
    model: Any, rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, batch_size: int
) -> list[Any]:
    """For each (prefix ids, continuation ids) row, the log-probabilities of the continuation's tokens (a 1-D float
    tensor): batches of ``batch_size`` rows in the given order, left padded, position ids counted from each row's
    first real token, logits computed on the continuation positions only, no gradients."""
    import torch

    if any(not cont for _, cont in rows):
        raise ValueError("empty continuation")
    device = model_device(model)
    out: list[Any] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        ids, mask = left_pad([list(p) + list(c) for p, c in batch], pad_id)
        keep = max(len(c) for _, c in batch) + 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                logits_to_keep=keep,
            ).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # position j predicts the token at kept position j + 1
        for row, (_, cont) in enumerate(batch):
            targets = torch.tensor(list(cont), device=logp.device)
            out.append(logp[row, -len(cont) :].gather(-1, targets[:, None]).squeeze(-1))
    return out

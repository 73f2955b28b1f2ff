"""Shared settings for the inverse-problem tests."""

from __future__ import annotations

import torch

# Tiny tensors gain nothing from 2 threads, and a training job may share the machine.
torch.set_num_threads(1)

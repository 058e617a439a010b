"""Omniglot data: archives to tensors, splits of characters, learn2learn tasks."""
from l2l_omniglot.data.images import DEFAULT_IMAGE_SIZE, to_float, to_uint8
from l2l_omniglot.data.omniglot import Omniglot, OmniglotSet, download_omniglot, load_omniglot, resolve_root
from l2l_omniglot.data.splits import SPLITS, Split, make_split
from l2l_omniglot.data.tasks import (AUGMENTS, CharacterImages, TaskBatch, TaskSampler, fixed_tasks,
                                     phase_samplers)

__all__ = [
    "AUGMENTS", "CharacterImages", "DEFAULT_IMAGE_SIZE", "Omniglot", "OmniglotSet", "SPLITS", "Split",
    "TaskBatch", "TaskSampler", "download_omniglot", "fixed_tasks", "load_omniglot", "make_split",
    "phase_samplers", "resolve_root", "to_float", "to_uint8",
]

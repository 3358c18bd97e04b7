"""The runtime every job stands on: model and tokenizer loading, dtype and device, chat tokenisation and packed
batches, generation, tracking and progress, checkpoints and the stop/requeue/DONE lifecycle, record I/O.

This layer imports only `yulan.schema` (and third-party packages). Curation, evaluation, preference data and the
trainers sit above it; nothing here imports them. Submodules that need torch import it themselves, so
`yulan.runtime.lifecycle` and `yulan.runtime.records` stay light enough for the login node.
"""

"""Edited checkpoints with their evidence: write them, describe them, check them.

* :mod:`~workbench.checkpoint.export`: :func:`export` writes a plain Hugging Face checkpoint
  of an edited model with its manifest, verification report and model card;
* :mod:`~workbench.checkpoint.manifest`: the manifest: every tensor's and file's hash before
  and after, the edits replayed, and a hash chain over them;
* :mod:`~workbench.checkpoint.model_card`: the model card that says what was changed and why;
* :mod:`~workbench.checkpoint.audit`: :func:`audit` re-checks every hash of an export.

``workbench.export`` and ``workbench.audit`` are these modules' functions.
"""

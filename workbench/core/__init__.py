"""The foundation that every other layer builds on, and that imports nothing above it.

* :mod:`~workbench.core.handle`: :class:`ModelHandle` and :func:`load`, a causal LM with its
  tokenizer, site map and analysis views;
* :mod:`~workbench.core.sites`: the site map, the one place that knows each architecture's
  module names;
* :mod:`~workbench.core.tokens`, :mod:`~workbench.core.padding`: prompts to token ids, spans,
  batches;
* :mod:`~workbench.core.examples`, :mod:`~workbench.core.metrics`: scoring prompts and objects;
* :mod:`~workbench.core.prefix_cache`, :mod:`~workbench.core.block_skip`: passes that reuse
  work (shared prefixes, unedited blocks);
* :mod:`~workbench.core.views`: TransformerLens' bridge and nnsight over the handle's weights;
* :mod:`~workbench.core.hashing`, :mod:`~workbench.core.files`: tensor hashes and atomic files;
* :mod:`~workbench.core.strict_json`: JSON without NaN, which strict parsers refuse;
* :mod:`~workbench.core.world`: the embedded fact world and its shipped models.

See ``docs/design.md`` for the layers above.
"""

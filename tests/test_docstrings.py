"""Every docstring example in the workbench runs and says what it shows."""

import doctest
import importlib

import pytest

MODULES = ["workbench", "workbench.handle", "workbench.metrics", "workbench.tokens",
           "workbench.world.facts", "workbench.world.tokenizer", "workbench.world.registry",
           "workbench.world.train", "workbench.examples",
           "workbench.manifest", "workbench.model_card", "workbench.export", "workbench.audit",
           "locate.attribution_patching", "locate.feature_data", "locate.features", "locate.fisher", "locate.registry",
           "locate.sae_splice", "locate.sae_train", "locate.restore", "locate.feature_search",
           "edit.forget_sweep", "workbench.widgets.view", "workbench.widgets.trace_explorer",
           "workbench.widgets.feature_browser", "workbench.widgets.collateral_explorer", "workbench.widgets.strength_sweep",
           "workbench.widgets.report_view",
           "edit.counterfact", "edit.covariance", "edit.edit", "edit.memit", "edit.null_space", "edit.patch", "edit.request",
           "edit.rome", "edit.values", "edit.forget_request", "edit.forget_figures",
           "edit.forget", "edit.forget_erase", "edit.ssd", "edit.rmu", "edit.gradient_unlearn",
           "edit.sae_bake", "edit.sae_ablation",
           "workbench.verify", "workbench.verify.truth_ratio", "workbench.verify.membership",
           "workbench.verify.quantise", "workbench.verify.probe", "workbench.verify.suppression",
           "workbench.verify.collateral", "workbench.verify.relearn",
           "workbench.verify.in_context", "workbench.verify.candidates", "workbench.verify.readings",
           "workbench.verify.verdict", "workbench.verify.rewrite", "workbench.verify.report",
           "workbench.verify.readings_cache", "workbench.files",
           "workbench.verify.report_html"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

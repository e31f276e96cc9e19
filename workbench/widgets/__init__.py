"""Interactive views for JupyterLab, one file per view, each with a static plotly copy.

* :mod:`~workbench.widgets.trace_explorer`: causal-trace heatmaps; click a cell for what the
  model predicts with that state restored, and edit there with ROME;
* :mod:`~workbench.widgets.feature_browser`: an SAE feature's top contexts, activations,
  promoted and suppressed tokens, people, and the effect of ablating it;
* :mod:`~workbench.widgets.collateral_explorer`: every fact's probability before vs after an
  edit, by group, with filters and the largest changes;
* :mod:`~workbench.widgets.strength_sweep`: forget vs retain accuracy over an unlearning
  method's strength setting, beside the retain model;
* :mod:`~workbench.widgets.report_view`: a verification report: the verdict, every check beside
  its baseline, its figures, and the evidence for each person or rewrite.

Each file holds pure functions that build figures and tables from data, and a thin view class
that wires them to widgets; :class:`~workbench.widgets.view.View` gives every view
``figure()`` (a static ``plotly.graph_objects.Figure``) and ``save(stem)`` (HTML and PNG).
"""

from workbench.widgets.collateral_explorer import CollateralExplorer
from workbench.widgets.feature_browser import FeatureBrowser
from workbench.widgets.report_view import ReportView
from workbench.widgets.strength_sweep import StrengthSweep
from workbench.widgets.trace_explorer import TraceExplorer
from workbench.widgets.view import View, save_figure

__all__ = [
    "CollateralExplorer",
    "FeatureBrowser",
    "ReportView",
    "StrengthSweep",
    "TraceExplorer",
    "View",
    "save_figure",
]

"""Run every benchmark in turn (``make bench``); each writes its results under benchmarks/results/."""

from benchmarks import (
    attribution_patching,
    causal_trace,
    memit,
    memit_bounds,
    memit_capacity,
    rome,
    sae_ablation,
    unlearning,
    verification,
    verify_report,
    world_models,
    world_width,
)

if __name__ == "__main__":
    for bench in (
        world_models,
        causal_trace,
        attribution_patching,
        rome,
        memit,
        memit_bounds,
        memit_capacity,
        world_width,
        sae_ablation,
        unlearning,
        verification,
        verify_report,
    ):
        print(f"## {bench.__name__}")
        bench.main()

"""Run every benchmark in turn (``make bench``); each writes its results under benchmarks/results/."""

from benchmarks import world_models

if __name__ == "__main__":
    for bench in (world_models,):
        print(f"## {bench.__name__}")
        bench.main()

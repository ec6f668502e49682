"dl_optim's benchmarks, run by hand: `python -m bench` runs them all and writes bench/results/SUMMARY.md"

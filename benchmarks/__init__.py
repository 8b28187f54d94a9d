"""Meta-step throughput and memory benchmarks (`python -m benchmarks.suite`)."""

"""Reinforcement-learning task domains: pure-JAX environments whose tasks
are sampled, rolled out and adapted to inside the jitted meta-step."""

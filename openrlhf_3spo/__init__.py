"""openrlhf-3spo: State-Score-Supervised Policy Optimization for multi-turn agents, on OpenRLHF 0.11.2."""

__version__ = "0.1.0"

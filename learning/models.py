"""Training runs and model versions arrive with the reward-learning work (issue 4)."""

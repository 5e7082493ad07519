"""`scaleset plan`: preview the upgrade domains and batches of a rollout (placeholder until the planner lands)."""

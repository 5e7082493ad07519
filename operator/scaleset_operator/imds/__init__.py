"""The Instance Metadata Service's scheduled-events API, served by the operator to the instances."""

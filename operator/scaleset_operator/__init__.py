"""scaleset-operator: VM scale set update and maintenance discipline for fleets of pods."""

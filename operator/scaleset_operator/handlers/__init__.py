"""kopf registrations: thin wiring from events to the control layer."""

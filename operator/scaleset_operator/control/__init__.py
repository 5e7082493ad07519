"""The only code that writes pods, PVCs, revisions, status and Events."""

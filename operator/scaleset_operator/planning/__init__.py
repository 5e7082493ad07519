"""Pure planning: upgrade domains, revisions, batches and health gates; no I/O, time is an argument."""

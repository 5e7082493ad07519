"""`scaleset sim`: run the embedded cluster in the foreground (placeholder until kubesim lands)."""

"""API types of fleet.scaleset.dev/v1alpha1 and the CRDs generated from them."""

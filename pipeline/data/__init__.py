"""Bundled demo data: the synthetic labelled seed corpus and the unlabelled demo post stream."""

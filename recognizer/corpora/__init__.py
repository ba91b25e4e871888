"""Readers that turn corpora, in the layout their owners distribute them in, into manifests."""

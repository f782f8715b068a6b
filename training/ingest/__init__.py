"""Real media in: manifests, the media index, preparation, feature extraction and Self-Lifting import."""

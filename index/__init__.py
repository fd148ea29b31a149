"""Item embeddings and semantic-ID quantisation (text and image modalities)."""

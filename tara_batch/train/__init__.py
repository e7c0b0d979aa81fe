"""Text-only contrastive fine-tuning of TARA (triplets, InfoNCE, Ray Train)."""

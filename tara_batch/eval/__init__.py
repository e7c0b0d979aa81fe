"""Evaluation metrics for TARA embeddings (retrieval, mAP, CiA, RTime, NegBench, CoVR, modality gap)."""

"""Training: resumable stages, noisy pretraining + curated k-fold fine-tuning, run folders."""

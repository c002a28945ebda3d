"""One trainer for every objective and every VLM stage (DDP, bf16, checkpoint/resume)."""

"""The fine-tuning pipeline: data files (formats), examples (data), tokenizer and model (modeling), the loop (loop)."""

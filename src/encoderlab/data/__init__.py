"""Data: the SynthWorld generator, WebDataset shards and their readers."""

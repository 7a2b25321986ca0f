"""Recording of visits (一案一录): per-track originals, composite, transcripts, manifest."""

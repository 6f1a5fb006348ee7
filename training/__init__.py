"""CNN Lab's training core: datasets as tensors, the paired-comparison engine and the report's experiments."""

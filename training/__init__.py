"""CNN Lab's training core: datasets as tensors, the paired-comparison engine and the report's experiments."""

import os

# On a Mac's GPU (MPS) an operation PyTorch has not written for it runs on the CPU, with PyTorch's
# own warning naming it, instead of ending the run. PyTorch reads these as it loads: every entry
# point (the CLI, app.py) imports this package before torch.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
# Asking whether CUDA is there asks NVML, not the CUDA driver, which would poison a later fork.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

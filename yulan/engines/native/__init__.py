"""engine=native: single-process PyTorch + transformers trainers that read the same stage configs as OpenRLHF."""

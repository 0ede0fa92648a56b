"""OmniSage in plain PyTorch: embedders, sequence model, contrastive losses, training.

No Dagster, DGL or LanceDB in here: inputs are Arrow/Parquet tables, outputs tensors and
safetensors checkpoints, so this package runs alone on a GPU box.
"""

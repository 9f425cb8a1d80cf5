"""The chain's steps, one module each; their order is in tasks/chain.py alone."""

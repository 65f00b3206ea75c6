"""The ordergraph benchmark harness (``python -m bench``); see ``bench/README.md``."""

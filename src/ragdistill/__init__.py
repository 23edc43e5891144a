"""ragdistill: retrieval-augmented LMs whose retriever learns from the reader's attention."""

__version__ = "0.1.0"

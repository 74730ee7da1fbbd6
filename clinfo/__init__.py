"""clinfo: cited answers to clinical questions from the biomedical literature."""

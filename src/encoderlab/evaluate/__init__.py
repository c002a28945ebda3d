"""Control check (classification) and embedding analysis of trained encoders."""

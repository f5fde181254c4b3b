"""How far each automatic quality signal can be trusted: readings of the sandbox's pictures, agreement of
each signal with human (or simulated) pairwise votes."""

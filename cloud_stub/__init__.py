"""The cloud stub: legal check, human review, threshold signing, escrow, evidence custody."""

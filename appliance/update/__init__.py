"""Updates with rollback: RAUC writes the other root slot, the Pi firmware's tryboot starts it
once, and boot health commits it or goes back (decision 0019)."""

"""Everything that touches OpenRLHF: registration, CLI, experience maker, samples generator, checkpoints."""

# Clinician review round-trip and LLaVA-style instruction data.

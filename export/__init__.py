"""From a DyMoS-patched torch module to deployable artifacts (imported as ``dymos.export``)."""

"""The torch-free runtime (imported as ``dymos.runtime``): it reads only a manifest and its artifacts."""

# Core utilities: configuration, logging, RNG, allocation.

"""Model builders: one function per family, configs as plain data."""

"""Sub-commands of ``nerfconf``: each module registers its own parsers."""

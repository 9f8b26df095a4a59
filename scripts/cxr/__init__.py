"""cxr: the tested logic behind the cxr-repro workflow (curation, splits, shards, training,
evaluation, audits, report). Snakemake `script:` entry points in `scripts/` only unpack the
`snakemake` object and call plain functions from here."""

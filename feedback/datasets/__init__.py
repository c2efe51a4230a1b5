"""Research datasets: versioned, content-hashed preference exports and their import.

- ``filters``: which judgements (``DatasetFilters``);
- ``schema``: the Arrow schemas of the pairs and segments tables;
- ``export``: the streaming Parquet/JSONL writer; ``digest``: the content hash;
- ``hf`` / ``minari_writer``: the Hugging Face directory and Minari demonstrations;
- ``services``: ``snapshot_create`` and ``snapshot_build`` (the job's body);
- ``selectors``: reads for the API and the page;
- ``importer``: ``snapshot_import`` of a snapshot made by another PrefLab.

Turning an export into ``imitation``'s fragment pairs is a tested snippet in
``docs/datasets.md`` (researchers copy it; it needs only numpy and pyarrow).

Import the submodules directly; this package keeps its import light (no pyarrow at
Django start-up).
"""

"""Research datasets: versioned, content-hashed preference exports and their import.

- ``filters``: which judgements (``DatasetFilters``);
- ``export``: streaming Parquet/JSONL writer and the content hash;
- ``hf`` / ``minari_writer``: the Hugging Face directory and Minari demonstrations;
- ``services``: ``snapshot_create`` and ``snapshot_build`` (the job's body);
- ``importer``: ``snapshot_import`` of a snapshot made by another PrefLab;
- ``imitation``: turn an export into ``imitation``'s fragment pairs and preferences.

Import the submodules directly; this package keeps its import light (no pyarrow at
Django start-up).
"""

"""The ground floor: errors, typed configuration, progress records, the coordinate convention,
chunking, devices, memory and disk checks, text formats, files and dask clusters (no torch)."""

"""Reports: the notebook API, papermill runner, index, disclosure control and the PII scan."""

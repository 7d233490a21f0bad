"""The streamed, resumable job runner behind `camlens explain FOLDER ...`."""

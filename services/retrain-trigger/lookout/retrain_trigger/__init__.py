"""lookout.retrain_trigger: quality policies over scores, drift and feedback; when one
fires, a dataset snapshot, a `requested` retrain event and (after approval if asked) a
fine-tuning job through a pluggable launcher."""

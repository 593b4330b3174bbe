"""The demo job: durable runs of a sample flow surviving a killed worker."""
